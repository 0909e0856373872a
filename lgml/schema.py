"""The firm-year input contract: columns, types, rules and header aliases.

Every stage of lgml reads the panel through this contract. One row per firm per fiscal
year; money in yuan (read from the unit in each header, ``营业收入(万元)``, unless ``units``
overrides it).

The rules themselves are checked by :func:`lgml.validate.check_panel`; this module only
describes the contract so that every other module can name columns without repeating them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

YEAR_MIN, YEAR_MAX = 2000, 2035
WAN = 10_000.0  # yuan per 万元


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    Attributes:
        name: Canonical (English) column name.
        kind: One of ``string``, ``int``, ``float``, ``bool``, ``category``.
        nullable: Whether missing values are allowed.
        money: Amount in yuan (converted from the header's unit, or from ``units``).
        aliases: Header spellings found in Chinese exports (CSMAR, Wind, 企查查 …).
        doc: One-line rule as shown to users.
    """

    name: str
    kind: str
    nullable: bool = False
    money: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)
    doc: str = ""


CREDIT_CODE_ALIASES = ("统一社会信用代码", "社会信用代码", "信用代码", "统一信用代码")
IDENTITY_COLUMNS = ("firm_name", "credit_code")  # carried beside firm_id, never model inputs

PANEL_COLUMNS: tuple[Column, ...] = (
    Column("firm_id", "string", aliases=("企业ID", "企业编号", "企业代码", "公司代码", "证券代码", "股票代码"),
           doc="required; (firm_id, year) unique"),
    Column("year", "int", aliases=("年份", "年度", "会计年度", "财务年度", "报告期", "截止日期", "会计期间", "统计年度"), doc=f"fiscal year, {YEAR_MIN}..{YEAR_MAX}"),
    Column("province", "category", aliases=("省份", "所属省份", "省", "所在省份", "地区"),
           doc="one of the 31 province-level divisions (English or Chinese names)"),
    Column("sector", "category", aliases=("行业代码", "所属行业代码", "国民经济行业代码", "行业大类代码"),
           doc="GB/T 4754-2017 industry division, 2-digit code 01..97"),
    Column("founded_year", "int", aliases=("成立年份", "成立年度", "成立日期", "成立时间", "注册日期"), doc="<= year"),
    Column("in_hightech_zone", "bool", aliases=("是否位于国家高新区", "国家高新区", "高新区"), doc="in a national high-tech zone"),
    Column("ownership", "category", nullable=True, aliases=("企业性质", "所有制", "产权性质", "所有制类型"),
           doc="private / state / foreign / other"),
    Column("employees", "int", aliases=("从业人员", "从业人数", "员工人数", "职工人数", "员工总数"), doc=">= 0"),
    Column("rd_staff", "int", nullable=True, aliases=("研发人员", "研发人员数量", "研发人员数"), doc="0 <= rd_staff <= employees"),
    Column("revenue", "float", money=True, aliases=("营业收入", "营业总收入"), doc="operating revenue, >= 0"),
    Column("main_business_revenue", "float", money=True, aliases=("主营业务收入", "主营收入"), doc="0 <= value <= revenue (1% tolerance)"),
    Column("net_profit", "float", money=True, aliases=("净利润",), doc="any sign"),
    Column("total_assets", "float", money=True, aliases=("资产总计", "总资产", "资产总额"), doc="> 0"),
    Column("total_liabilities", "float", money=True, aliases=("负债合计", "总负债", "负债总额"), doc=">= 0"),
    Column("rd_expense", "float", nullable=True, money=True, aliases=("研发费用", "研发投入", "研发支出"), doc=">= 0"),
    Column("equity_financing", "float", nullable=True, money=True, aliases=("股权融资", "新增实收资本", "股权融资额"),
           doc="new paid-in equity that year, >= 0"),
    Column("invention_patents", "int", aliases=("发明专利", "发明专利数", "有效发明专利", "发明专利数量"), doc=">= 0"),
    Column("class1_ip", "int", aliases=("一类知识产权", "I类知识产权", "Ⅰ类知识产权"), doc=">= invention_patents"),
    Column("class2_ip", "int", aliases=("二类知识产权", "II类知识产权", "Ⅱ类知识产权"), doc=">= 0"),
    Column("niche_years", "int", aliases=("细分市场年限", "从事细分市场年限", "深耕年限"), doc=">= 0"),
    Column("niche_market_share", "float", nullable=True, aliases=("细分市场占有率", "市场占有率", "全国市场占有率"), doc="0..1"),
    Column("own_brand", "bool", aliases=("自主品牌", "是否拥有自主品牌"), doc=""),
    Column("quality_certified", "bool", aliases=("质量认证", "管理体系认证", "质量管理认证"), doc=""),
    Column("digital_level", "int", nullable=True, aliases=("数字化水平", "数字化等级"), doc="1..5"),
    Column("rd_institution", "category", aliases=("研发机构", "研发机构级别", "研发机构等级"),
           doc="none / municipal / provincial / national"),
    Column("key_customers", "int", aliases=("重点客户数", "大企业客户数", "知名大企业客户数"), doc=">= 0"),
    Column("foundation_field", "bool", aliases=("工业六基", "是否属于工业六基"), doc="leading product in 工业六基"),
    Column("strategic_industry", "bool", aliases=("战略性新兴产业", "是否战略性新兴产业"), doc="key strategic industry"),
    Column("srdi_provincial", "bool", aliases=("省级专精特新", "专精特新中小企业", "是否省级专精特新"),
           doc="holds provincial SRDI status that year"),
    Column("firm_name", "string", nullable=True, aliases=("企业名称", "公司名称", "企业名字", "公司名字", "单位名称"),
           doc="optional; carried into scores and reports, never a model input"),
    Column("credit_code", "string", nullable=True, aliases=CREDIT_CODE_ALIASES,
           doc="optional 统一社会信用代码, 18 characters with a valid check character (GB 32100-2015); "
               "used as firm_id when the export has no firm ID column"),
)

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("firm_id", "string", aliases=PANEL_COLUMNS[0].aliases, doc="required"),
    Column("batch_year", "int", aliases=("批次年份", "认定年份", "认定年度", "公示年份", "入选年份"), doc="designation batch year, 2019.."),
    Column("revoked_year", "int", nullable=True, aliases=("撤销年份", "复核未通过年份", "失效年份"),
           doc="year the title was lost; > batch_year"),
)

PANEL_NAMES: tuple[str, ...] = tuple(c.name for c in PANEL_COLUMNS)
EVENT_NAMES: tuple[str, ...] = tuple(c.name for c in EVENT_COLUMNS)
MONEY_COLUMNS: tuple[str, ...] = tuple(c.name for c in PANEL_COLUMNS if c.money)

OWNERSHIP_LEVELS = ("private", "state", "foreign", "other")
RD_INSTITUTION_LEVELS = ("none", "municipal", "provincial", "national")
SECTOR_LEVELS = tuple(f"{i:02d}" for i in range(1, 98))

# The 31 province-level divisions: canonical English name -> (full Chinese name, short name, region).
PROVINCES: dict[str, tuple[str, str, str]] = {
    "Beijing": ("北京市", "北京", "east"),
    "Tianjin": ("天津市", "天津", "east"),
    "Hebei": ("河北省", "河北", "east"),
    "Shanxi": ("山西省", "山西", "central"),
    "Inner Mongolia": ("内蒙古自治区", "内蒙古", "west"),
    "Liaoning": ("辽宁省", "辽宁", "northeast"),
    "Jilin": ("吉林省", "吉林", "northeast"),
    "Heilongjiang": ("黑龙江省", "黑龙江", "northeast"),
    "Shanghai": ("上海市", "上海", "east"),
    "Jiangsu": ("江苏省", "江苏", "east"),
    "Zhejiang": ("浙江省", "浙江", "east"),
    "Anhui": ("安徽省", "安徽", "central"),
    "Fujian": ("福建省", "福建", "east"),
    "Jiangxi": ("江西省", "江西", "central"),
    "Shandong": ("山东省", "山东", "east"),
    "Henan": ("河南省", "河南", "central"),
    "Hubei": ("湖北省", "湖北", "central"),
    "Hunan": ("湖南省", "湖南", "central"),
    "Guangdong": ("广东省", "广东", "east"),
    "Guangxi": ("广西壮族自治区", "广西", "west"),
    "Hainan": ("海南省", "海南", "east"),
    "Chongqing": ("重庆市", "重庆", "west"),
    "Sichuan": ("四川省", "四川", "west"),
    "Guizhou": ("贵州省", "贵州", "west"),
    "Yunnan": ("云南省", "云南", "west"),
    "Tibet": ("西藏自治区", "西藏", "west"),
    "Shaanxi": ("陕西省", "陕西", "west"),
    "Gansu": ("甘肃省", "甘肃", "west"),
    "Qinghai": ("青海省", "青海", "west"),
    "Ningxia": ("宁夏回族自治区", "宁夏", "west"),
    "Xinjiang": ("新疆维吾尔自治区", "新疆", "west"),
}
PROVINCE_LEVELS: tuple[str, ...] = tuple(PROVINCES)

# Names accepted on input -> canonical English name. Separately-planned cities and the
# Xinjiang Production and Construction Corps belong to their province.
PROVINCE_ALIASES: dict[str, str] = {
    **{name: name for name in PROVINCES},
    **{name.lower(): name for name in PROVINCES},
    **{full: name for name, (full, _, _) in PROVINCES.items()},
    **{short: name for name, (_, short, _) in PROVINCES.items()},
    "Xizang": "Tibet",
    "xizang": "Tibet",
    "大连市": "Liaoning", "大连": "Liaoning",
    "宁波市": "Zhejiang", "宁波": "Zhejiang",
    "厦门市": "Fujian", "厦门": "Fujian",
    "青岛市": "Shandong", "青岛": "Shandong",
    "深圳市": "Guangdong", "深圳": "Guangdong",
    "新疆生产建设兵团": "Xinjiang", "兵团": "Xinjiang",
}

# Every GB/T 4754-2017 division (大类) 01..97: code -> (official Chinese name, short English name).
SECTOR_NAMES: dict[str, tuple[str, str]] = {
    # A 农、林、牧、渔业
    "01": ("农业", "agriculture"),
    "02": ("林业", "forestry"),
    "03": ("畜牧业", "animal husbandry"),
    "04": ("渔业", "fishery"),
    "05": ("农、林、牧、渔专业及辅助性活动", "agricultural support services"),
    # B 采矿业
    "06": ("煤炭开采和洗选业", "coal mining"),
    "07": ("石油和天然气开采业", "oil and gas extraction"),
    "08": ("黑色金属矿采选业", "ferrous metal ore mining"),
    "09": ("有色金属矿采选业", "non-ferrous metal ore mining"),
    "10": ("非金属矿采选业", "non-metallic mineral mining"),
    "11": ("开采专业及辅助性活动", "mining support services"),
    "12": ("其他采矿业", "other mining"),
    # C 制造业
    "13": ("农副食品加工业", "agri-food processing"),
    "14": ("食品制造业", "food manufacturing"),
    "15": ("酒、饮料和精制茶制造业", "beverages and tea"),
    "16": ("烟草制品业", "tobacco"),
    "17": ("纺织业", "textiles"),
    "18": ("纺织服装、服饰业", "apparel"),
    "19": ("皮革、毛皮、羽毛及其制品和制鞋业", "leather, fur and footwear"),
    "20": ("木材加工和木、竹、藤、棕、草制品业", "wood products"),
    "21": ("家具制造业", "furniture"),
    "22": ("造纸和纸制品业", "paper"),
    "23": ("印刷和记录媒介复制业", "printing and recorded media"),
    "24": ("文教、工美、体育和娱乐用品制造业", "stationery, crafts, sports and toys"),
    "25": ("石油、煤炭及其他燃料加工业", "petroleum, coal and fuel processing"),
    "26": ("化学原料和化学制品制造业", "chemical materials"),
    "27": ("医药制造业", "pharmaceuticals"),
    "28": ("化学纤维制造业", "chemical fibres"),
    "29": ("橡胶和塑料制品业", "rubber and plastics"),
    "30": ("非金属矿物制品业", "non-metallic minerals"),
    "31": ("黑色金属冶炼和压延加工业", "ferrous metal smelting and rolling"),
    "32": ("有色金属冶炼和压延加工业", "non-ferrous metals"),
    "33": ("金属制品业", "metal products"),
    "34": ("通用设备制造业", "general equipment"),
    "35": ("专用设备制造业", "special equipment"),
    "36": ("汽车制造业", "automobiles"),
    "37": ("铁路、船舶、航空航天和其他运输设备制造业", "railway, ship, aerospace equipment"),
    "38": ("电气机械和器材制造业", "electrical machinery"),
    "39": ("计算机、通信和其他电子设备制造业", "computers, communication and electronics"),
    "40": ("仪器仪表制造业", "instruments"),
    "41": ("其他制造业", "other manufacturing"),
    "42": ("废弃资源综合利用业", "waste resource recycling"),
    "43": ("金属制品、机械和设备修理业", "metal products and machinery repair"),
    # D 电力、热力、燃气及水生产和供应业
    "44": ("电力、热力生产和供应业", "electricity and heat supply"),
    "45": ("燃气生产和供应业", "gas supply"),
    "46": ("水的生产和供应业", "water supply"),
    # E 建筑业
    "47": ("房屋建筑业", "building construction"),
    "48": ("土木工程建筑业", "civil engineering"),
    "49": ("建筑安装业", "construction installation"),
    "50": ("建筑装饰、装修和其他建筑业", "building decoration and other construction"),
    # F 批发和零售业
    "51": ("批发业", "wholesale"),
    "52": ("零售业", "retail"),
    # G 交通运输、仓储和邮政业
    "53": ("铁路运输业", "railway transport"),
    "54": ("道路运输业", "road transport"),
    "55": ("水上运输业", "water transport"),
    "56": ("航空运输业", "air transport"),
    "57": ("管道运输业", "pipeline transport"),
    "58": ("多式联运和运输代理业", "multimodal transport and forwarding"),
    "59": ("装卸搬运和仓储业", "loading, handling and warehousing"),
    "60": ("邮政业", "postal services"),
    # H 住宿和餐饮业
    "61": ("住宿业", "accommodation"),
    "62": ("餐饮业", "catering"),
    # I 信息传输、软件和信息技术服务业
    "63": ("电信、广播电视和卫星传输服务", "telecom, broadcasting and satellite transmission"),
    "64": ("互联网和相关服务", "internet services"),
    "65": ("软件和信息技术服务业", "software and IT services"),
    # J 金融业
    "66": ("货币金融服务", "monetary and financial services"),
    "67": ("资本市场服务", "capital market services"),
    "68": ("保险业", "insurance"),
    "69": ("其他金融业", "other financial services"),
    # K 房地产业
    "70": ("房地产业", "real estate"),
    # L 租赁和商务服务业
    "71": ("租赁业", "leasing"),
    "72": ("商务服务业", "business services"),
    # M 科学研究和技术服务业
    "73": ("研究和试验发展", "research and experimental development"),
    "74": ("专业技术服务业", "professional technical services"),
    "75": ("科技推广和应用服务业", "technology promotion"),
    # N 水利、环境和公共设施管理业
    "76": ("水利管理业", "water management"),
    "77": ("生态保护和环境治理业", "ecological protection and environmental treatment"),
    "78": ("公共设施管理业", "public facilities management"),
    "79": ("土地管理业", "land management"),
    # O 居民服务、修理和其他服务业
    "80": ("居民服务业", "household services"),
    "81": ("机动车、电子产品和日用产品修理业", "repair of vehicles and household goods"),
    "82": ("其他服务业", "other services"),
    # P 教育
    "83": ("教育", "education"),
    # Q 卫生和社会工作
    "84": ("卫生", "health"),
    "85": ("社会工作", "social work"),
    # R 文化、体育和娱乐业
    "86": ("新闻和出版业", "news and publishing"),
    "87": ("广播、电视、电影和录音制作业", "broadcasting, film and sound recording"),
    "88": ("文化艺术业", "culture and arts"),
    "89": ("体育", "sports"),
    "90": ("娱乐业", "entertainment"),
    # S 公共管理、社会保障和社会组织
    "91": ("中国共产党机关", "Communist Party organs"),
    "92": ("国家机构", "state organs"),
    "93": ("人民政协、民主党派", "CPPCC and democratic parties"),
    "94": ("社会保障", "social security"),
    "95": ("群众团体、社会团体和其他成员组织", "mass and social organisations"),
    "96": ("基层群众自治组织及其他组织", "grassroots self-governing organisations"),
    # T 国际组织
    "97": ("国际组织", "international organisations"),
}
MANUFACTURING_SECTORS = tuple(f"{i:02d}" for i in range(13, 44))
RESEARCH_SERVICE_SECTORS = ("73", "74", "75")


def column(name: str) -> Column:
    """Return the panel or event column spec called ``name``."""
    for col in PANEL_COLUMNS + EVENT_COLUMNS:
        if col.name == name:
            return col
    raise KeyError(f"no contract column {name!r}")


CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "province": PROVINCE_LEVELS,
    "sector": SECTOR_LEVELS,
    "ownership": OWNERSHIP_LEVELS,
    "rd_institution": RD_INSTITUTION_LEVELS,
}


def dtype_of(col: Column):
    """The canonical pandas dtype of a contract column once read and validated.

    Integers that may be missing are held as float64 (NaN = missing) so that every
    numeric column converts to a float matrix without object dtypes.
    """
    import pandas as pd

    if col.kind == "category":
        return pd.CategoricalDtype(CATEGORY_LEVELS[col.name])
    if col.kind == "int":
        return "float64" if col.nullable else "int64"
    return {"float": "float64", "bool": "bool", "string": "str"}[col.kind]


def canonical_rows(panel: pd.DataFrame) -> pd.DataFrame:
    """Contract panel rows with the contract's dtypes restored: category levels fixed (a round
    trip through Parquet or Dask leaves only the levels present, or unknown ones), ``firm_id``
    as ``str``, integers as the contract holds them."""
    casts = {}
    for col in PANEL_COLUMNS:
        if col.name in panel.columns and panel[col.name].dtype != dtype_of(col):
            casts[col.name] = dtype_of(col)
    return panel.astype(casts) if casts else panel


@dataclass(frozen=True)
class Problem:
    """One broken rule of the contract.

    Attributes:
        table: ``"panel"`` or ``"events"``.
        column: Contract column name, or ``"firm_id, year"`` for a key rule.
        rule: The rule as shown to users, e.g. ``"must be >= 0"``.
        count: Number of rows breaking it (all rows for a column-level problem).
        examples: Up to five ``(firm_id, year, value)`` tuples (``batch_year`` for events);
            empty for column-level problems such as a missing column. A value is the input
            text for unreadable values, the parsed value otherwise, and a pair for rules
            between two columns.
    """

    table: str
    column: str
    rule: str
    count: int
    examples: tuple = ()
