"""Synthetic firm names and unified social credit codes for the simulated panel.

Names are marked as synthetic (they start with :data:`MARK`) and built from a province's short
name, a two-character trade name and an industry word: ``[模拟]江苏恒越精密机械有限公司``. Codes
are well formed (GB 32100-2015 check character, the province's real two-digit region prefix) but
drawn at random: they identify no real organisation.

Example:
    >>> import numpy as np
    >>> names, codes = synthetic_identities(np.array(["Jiangsu"]), np.array(["34"]), np.random.default_rng(0))
    >>> names[0].startswith(MARK), codes[0][2:4]
    (True, '32')
"""

from __future__ import annotations

import numpy as np

from lgml.credit_code import ALPHABET, with_check
from lgml.schema import PROVINCES

MARK = "[模拟]"  # every synthetic name starts with it
REGION_PREFIX = {
    "Beijing": "11", "Tianjin": "12", "Hebei": "13", "Shanxi": "14", "Inner Mongolia": "15", "Liaoning": "21",
    "Jilin": "22", "Heilongjiang": "23", "Shanghai": "31", "Jiangsu": "32", "Zhejiang": "33", "Anhui": "34",
    "Fujian": "35", "Jiangxi": "36", "Shandong": "37", "Henan": "41", "Hubei": "42", "Hunan": "43",
    "Guangdong": "44", "Guangxi": "45", "Hainan": "46", "Chongqing": "50", "Sichuan": "51", "Guizhou": "52",
    "Yunnan": "53", "Tibet": "54", "Shaanxi": "61", "Gansu": "62", "Qinghai": "63", "Ningxia": "64", "Xinjiang": "65",
}
TRADE_NAMES = tuple(
    "恒越 瑞丰 华晟 鼎新 博远 宏达 精诚 汇智 启明 聚能 拓维 长盈 卓信 安泰 明德 天衡 远航 正泽 佳禾 凯瑞 "
    "中科 新锐 海川 德润 金桥 创联 领航 万通 盛源 东方 嘉和 昊天 弘毅 泽润 同创 众合 亿达 星辰 北辰 锦程"
    .split())
INDUSTRY_WORDS = {
    "manufacturing": ("精密机械", "电子科技", "新材料", "智能装备", "汽车零部件", "仪器仪表", "传动科技", "化工科技"),
    "software": ("软件", "信息技术", "网络科技", "数据科技"),
    "research": ("技术研究", "检测技术", "生物科技"),
    "other": ("科技", "实业", "环保科技"),
}


def _industry(sector: str) -> str:
    division = int(sector) if str(sector).isdigit() else 0
    if 13 <= division <= 43:
        return "manufacturing"
    if 63 <= division <= 65:
        return "software"
    if 73 <= division <= 75:
        return "research"
    return "other"


def synthetic_identities(provinces: np.ndarray, sectors: np.ndarray, rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic name and credit code for each firm.

    Args:
        provinces: Canonical province name of each firm, shape (n,).
        sectors: Two-digit industry division of each firm, shape (n,).
        rng: The generator drawn from (a stream of its own: the rest of a simulation is unchanged).

    Returns:
        Names and codes, object arrays of shape (n,); the codes are distinct.
    """
    n = len(provinces)
    trade = rng.integers(0, len(TRADE_NAMES), n)
    words = rng.integers(0, 1 << 16, n)
    body = rng.integers(0, len(ALPHABET), (n, 7))
    city = rng.integers(1, 20, n)
    names, codes = [], []
    for i in range(n):
        options = INDUSTRY_WORDS[_industry(sectors[i])]
        names.append(f"{MARK}{PROVINCES[provinces[i]][1]}{TRADE_NAMES[trade[i]]}{options[words[i] % len(options)]}有限公司")
        region = f"{REGION_PREFIX[provinces[i]]}{city[i]:02d}00"
        # 91: an enterprise registered with market regulation; MA + 7 characters: a recent registration.
        org = "MA" + "".join(ALPHABET[j] for j in body[i])
        codes.append(with_check(f"91{region}{org}"))
    codes = _distinct(codes)
    return np.array(names, dtype=object), np.array(codes, dtype=object)


def _distinct(codes: list[str]) -> list[str]:
    """``codes`` with any repeat replaced by a fresh code (its organisation code counted on)."""
    seen: set[str] = set()
    out = []
    for code in codes:
        bump = 0
        while code in seen:
            bump += 1
            code = with_check(code[:10] + f"{bump:07d}")
        seen.add(code)
        out.append(code)
    return out
