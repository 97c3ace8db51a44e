package synth

// ColType is the portable type of a native column; each target maps it to its own SQL
// type. The Go value a row carries for it is fixed:
//
//	Text      string
//	Date      time.Time at midnight UTC
//	Timestamp time.Time in UTC, whole seconds
//	Numeric   string, a plain decimal with exactly Scale decimal places
//	Float     float64
//
// A nil value is SQL NULL (only in Nullable columns, except in planted-invalid rows).
type ColType int

// Column types.
const (
	Text ColType = iota
	Date
	Timestamp
	Numeric
	Float
)

// Column is one native column.
type Column struct {
	Name      string
	Type      ColType
	Size      int // Text: maximum characters; Numeric: precision
	Scale     int // Numeric: decimal places
	Nullable  bool
	Comment   string // the column's meaning in the department's own words
	KeyMember bool   // part of the table's primary key
}

// Table is one department's native table.
type Table struct {
	Dept    string
	Name    string
	Comment string
	Columns []Column
	// Indexes are secondary indexes, each a list of columns, built after the load.
	Indexes [][]string
}

// ColumnNames returns the column names in order.
func (t *Table) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// Key returns the primary-key column names in order.
func (t *Table) Key() []string {
	var k []string
	for _, c := range t.Columns {
		if c.KeyMember {
			k = append(k, c.Name)
		}
	}
	return k
}

// Tables returns the native table of every department, in generation order.
func Tables() []*Table {
	return []*Table{&personTable, &orgTable, &parcelTable, &indicatorTable, &licenceTable}
}

// TableOf returns dept's native table, or nil for an unknown department.
func TableOf(dept string) *Table {
	for _, t := range Tables() {
		if t.Dept == dept {
			return t
		}
	}
	return nil
}

func text(name string, size int, comment string) Column {
	return Column{Name: name, Type: Text, Size: size, Comment: comment}
}

func nullable(c Column) Column { c.Nullable = true; return c }

func key(c Column) Column { c.KeyMember = true; return c }

var gxsj = Column{Name: "gxsj", Type: Timestamp, Comment: "更新时间"}

// personTable is 人口基本信息 (rk_jbxx) as a public security system keeps it: gender as
// 男/女, the birth date as YYYYMMDD text, status as a one-digit code.
var personTable = Table{
	Dept: DeptPopulation, Name: "rk_jbxx", Comment: "人口基本信息",
	Columns: []Column{
		key(text("sfzh", 18, "公民身份号码")),
		text("xm", 64, "姓名"),
		text("xb", 2, "性别(男/女)"),
		text("csrq", 8, "出生日期(YYYYMMDD)"),
		nullable(text("mz", 2, "民族代码(GB 3304)")),
		text("hjdz_qhdm", 6, "户籍地址行政区划代码"),
		text("hjdz_xz", 256, "户籍地址详址"),
		nullable(text("lxdh", 20, "联系电话")),
		text("ryzt", 1, "人员状态(1正常 2死亡 3迁出)"),
		gxsj,
	},
	Indexes: [][]string{{"gxsj", "sfzh"}},
}

// orgTable is 市场主体登记 (scztdj): Chinese subject types and registration states,
// registered capital in 万元.
var orgTable = Table{
	Dept: DeptMarket, Name: "scztdj", Comment: "市场主体登记信息",
	Columns: []Column{
		key(text("tyshxydm", 18, "统一社会信用代码")),
		text("qymc", 200, "名称"),
		text("ztlx", 8, "主体类型(企业/事业单位/社会组织/机关)"),
		text("fddbr_zjhm", 18, "法定代表人证件号码"),
		text("fddbr_xm", 64, "法定代表人姓名"),
		{Name: "zczb", Type: Numeric, Size: 18, Scale: 4, Nullable: true, Comment: "注册资本(万元)"},
		{Name: "clrq", Type: Date, Comment: "成立日期"},
		text("djzt", 4, "登记状态(存续/吊销/注销)"),
		text("zs_qhdm", 6, "住所行政区划代码"),
		nullable(text("zs", 256, "住所")),
		nullable(text("hydm", 5, "行业代码(GB/T 4754)")),
		gxsj,
	},
	Indexes: [][]string{{"gxsj", "tyshxydm"}},
}

// parcelTable is 宗地基本信息 (bdc_zd) of the real-estate register: the right holder is
// either an organization (qlr_tyshxydm) or a person (qlr_sfzh); the registration date is
// text YYYY/MM/DD.
var parcelTable = Table{
	Dept: DeptLand, Name: "bdc_zd", Comment: "宗地基本信息",
	Columns: []Column{
		key(text("zddm", 19, "宗地代码")),
		text("qhdm", 6, "行政区划代码"),
		text("tdyt", 4, "土地用途(GB/T 21010)"),
		{Name: "zdmj", Type: Numeric, Size: 14, Scale: 2, Comment: "宗地面积(平方米)"},
		text("qllx", 16, "权利类型"),
		nullable(text("qlr_tyshxydm", 18, "权利人统一社会信用代码")),
		nullable(text("qlr_sfzh", 18, "权利人身份证号")),
		{Name: "jd", Type: Float, Comment: "经度(CGCS2000)"},
		{Name: "wd", Type: Float, Comment: "纬度(CGCS2000)"},
		text("djrq", 10, "登记日期(YYYY/MM/DD)"),
		gxsj,
	},
	Indexes: [][]string{{"gxsj", "zddm"}},
}

// indicatorTable is 统计指标数据 (tj_zbsj).
var indicatorTable = Table{
	Dept: DeptStatistics, Name: "tj_zbsj", Comment: "统计指标数据",
	Columns: []Column{
		key(text("zbdm", 32, "指标代码")),
		key(text("qhdm", 6, "行政区划代码")),
		key(text("tjq", 7, "统计期")),
		{Name: "zbz", Type: Numeric, Size: 20, Scale: 4, Comment: "指标值"},
		text("jldw", 32, "计量单位"),
		{Name: "fbrq", Type: Date, Comment: "发布日期"},
		gxsj,
	},
	Indexes: [][]string{{"gxsj", "zbdm", "qhdm", "tjq"}},
}

// licenceTable is 电子证照 证照信息 (dzzz_zzxx) of the government service data authority's
// e-licence register: the licence type by its Chinese name, the holder by USCC
// (czzt_tyshxydm) or citizen ID (czzt_sfzh), the issuing department by code and name,
// the status in Chinese, the content digest and the issuer's signature in hex. It is
// indexed on (gxsj, zzbh), the (cursor, key) order connectors page in.
var licenceTable = Table{
	Dept: DeptLicence, Name: "dzzz_zzxx", Comment: "电子证照信息",
	Columns: []Column{
		key(text("zzbh", 40, "证照编号")),
		text("zzlx", 32, "证照类型"),
		nullable(text("czzt_tyshxydm", 18, "持证主体统一社会信用代码")),
		nullable(text("czzt_sfzh", 18, "持证人身份证号")),
		text("czztmc", 200, "持证主体名称"),
		text("fzjgdm", 32, "发证机关代码"),
		text("fzjgmc", 64, "发证机关名称"),
		text("fzjg_qhdm", 6, "发证机关行政区划代码"),
		{Name: "fzrq", Type: Date, Comment: "发证日期"},
		{Name: "yxqz", Type: Date, Nullable: true, Comment: "有效期至(空为长期)"},
		text("zzzt", 4, "证照状态(有效/暂扣/吊销/注销/过期)"),
		text("zzwjzy", 64, "证照文件摘要(SHA-256)"),
		text("fzjgqm", 128, "发证机关签名(Ed25519)"),
		gxsj,
	},
	Indexes: [][]string{{"gxsj", "zzbh"}},
}
