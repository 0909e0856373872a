"""Regenerate the GBK-encoded panel fixtures beside this file.

    python tests/data/make_fixtures.py

- ``valid_gbk.csv``: a valid panel with Chinese headers, money in 万元 (read with ``units="wan"``).
- ``broken_gbk.csv``: the same headers without units, money in yuan, broken on purpose in four
  ways: text in a number column, a negative revenue, a duplicated (firm_id, year), an unknown
  province. Each fault sits in a row of its own so that no other rule breaks.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MONEY = ("营业收入", "主营业务收入", "净利润", "资产总计", "负债合计", "研发费用", "股权融资")
HEADERS = (
    "企业代码", "企业名称", "年份", "省份", "行业代码", "成立年份", "是否位于国家高新区", "企业性质",
    "从业人员", "研发人员", *MONEY, "发明专利", "一类知识产权", "二类知识产权", "细分市场年限",
    "细分市场占有率", "自主品牌", "质量认证", "数字化水平", "研发机构", "重点客户数", "工业六基",
    "战略性新兴产业", "省级专精特新",
)
# One firm-year per row, money in 万元, in HEADERS order. Blank and "--" are missing values.
ROWS = (
    ("F001", "苏州精工传动科技有限公司", "2021", "江苏省", "C34", "2008", "是", "民营", "320", "64",
     "25000.5", "23800", "2100.3", "31000", "12000", "1250", "", "12", "15", "30", "10", "12%",
     "是", "是", "3", "省级", "6", "是", "是", "是"),
    ("F001", "苏州精工传动科技有限公司", "2022", "江苏", "C34", "2008", "是", "民营", "335", "70",
     "27800", "26500", "2400", "33500", "12500", "1480", "3000", "15", "18", "34", "11", "13%",
     "是", "是", "4", "省级", "7", "是", "是", "是"),
    ("F002", "深圳微芯测控有限公司", "2021", "广东省", "40", "2012", "否", "外资", "150", "",
     "8600", "8600", "-120", "9900", "3100", "910", "--", "4", "6", "12", "6", "",
     "否", "是", "2", "市级", "3", "否", "是", "否"),
    ("F002", "深圳微芯测控有限公司", "2022", "广东省", "40", "2012", "否", "外资", "160", "35",
     "9400", "9300", "310", "10800", "3300", "1010", "500", "5", "7", "15", "7", "8.5%",
     "否", "是", "3", "市级", "4", "否", "是", "是"),
    ("F003", "杭州新材高分子有限公司", "2022", "浙江省", "26", "2015", "Y", "国企", "90", "18",
     "5200", "5000", "410", "7600", "2900", "330", "", "2", "3", "8", "5", "",
     "Y", "N", "", "无", "2", "是", "否", "否"),
)
# Faults of broken_gbk.csv (money in yuan): (row of ROWS to copy, column, broken value).
FAULTS = (
    (0, "从业人员", "约320人"),  # text in an integer column
    (2, "营业收入", "-86000000"),  # negative revenue
    (3, "省份", "火星省"),  # unknown province
)


def valid_rows() -> list[list[str]]:
    return [list(row) for row in ROWS]


def broken_rows() -> list[list[str]]:
    rows = valid_rows()
    for row in rows:  # the broken file states money in yuan
        for name in MONEY:
            i = HEADERS.index(name)
            if row[i] not in ("", "--"):
                row[i] = f"{float(row[i]) * 10_000:.0f}"
    for index, name, value in FAULTS:
        rows[index][HEADERS.index(name)] = value
    rows.append(list(rows[4]))  # F003 2022 twice: a duplicated (firm_id, year)
    return rows


def write(folder: Path = HERE) -> tuple[Path, Path]:
    """Write both fixtures into ``folder``; return their paths (valid, broken)."""
    money_header = {name: f"{name}(万元)" if i % 2 else f"{name}（万元）" for i, name in enumerate(MONEY)}
    valid_headers = [money_header.get(h, h) for h in HEADERS]
    paths = folder / "valid_gbk.csv", folder / "broken_gbk.csv"
    for path, headers, rows in zip(paths, (valid_headers, list(HEADERS)), (valid_rows(), broken_rows())):
        with open(path, "w", encoding="gbk", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([headers, *rows])
    return paths


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
