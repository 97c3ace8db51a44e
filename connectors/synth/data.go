package synth

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// Word lists for names and addresses. They are plain data: the shares below roughly
// follow the published surname rankings, enough for realistic masking and matching
// demos, not for statistics.

// commonSurnames are drawn with weight 6 for the first ten, 3 for the next twenty and 1
// for the rest.
var commonSurnames = strings.Fields(`王 李 张 刘 陈 杨 黄 赵 吴 周
徐 孙 马 朱 胡 郭 何 高 林 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹
彭 曾 肖 田 董 袁 潘 于 蒋 蔡 余 杜 叶 程 苏 魏 吕 丁 任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金
石 廖 贾 夏 韦 付 方 白 邹 孟 熊 秦 邱 江 尹 薛 闫 段 雷 侯 龙 史 陶 黎 贺 顾 毛 郝 龚 邵
万 钱 严 覃 武 戴 莫 孔 向 汤 楼 俞 应 屠 章 柏`)

// compoundSurnames (复姓) are about one name in a hundred.
var compoundSurnames = strings.Fields(`欧阳 司马 诸葛 上官 东方 皇甫 令狐 慕容 司徒 尉迟 公孙 夏侯`)

var surnameCum = func() []int {
	cum := make([]int, len(commonSurnames))
	t := 0
	for i := range commonSurnames {
		switch {
		case i < 10:
			t += 6
		case i < 30:
			t += 3
		default:
			t++
		}
		cum[i] = t
	}
	return cum
}()

var (
	maleGiven   = []rune("伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宁健俊帆浩宇轩博文建国志海峰晨阳凯睿泽然东林永庆德兴")
	femaleGiven = []rune("芳娜敏静丽艳娟霞秀玲桂英燕萍红琳雪婷慧颖欣怡佳梦琪悦涵萱诗雨思晓欢月婧蕾倩妍璐")
	commonGiven = []rune("子一文嘉安新春")
)

func personName(r *rand.Rand, male bool) string {
	var b strings.Builder
	if r.IntN(100) == 0 {
		b.WriteString(pick(r, compoundSurnames))
	} else {
		b.WriteString(commonSurnames[weighted(r, surnameCum)])
	}
	given := femaleGiven
	if male {
		given = maleGiven
	}
	n := 2
	if r.IntN(4) == 0 {
		n = 1
	}
	for k := 0; k < n; k++ {
		if r.IntN(8) == 0 {
			b.WriteRune(pick(r, commonGiven))
		} else {
			b.WriteRune(pick(r, given))
		}
	}
	return b.String()
}

// streets are real street names of each demo city, so an address reads true to its
// city; other cities draw from all of them.
var streets = map[string][]string{
	"330100": strings.Fields(`文三路 文二路 天目山路 庆春路 体育场路 凤起路 延安路 解放路 中河路 莫干山路 江南大道 滨盛路 文一西路 余杭塘路`),
	"330200": strings.Fields(`中山东路 百丈路 鄞县大道 天童南路 兴宁路 县前街 大成路 灵桥路 和义路 解放北路`),
	"320100": strings.Fields(`北京东路 长江路 珠江路 汉中路 中山北路 太平南路 广州路 中山东路 龙蟠中路 虎踞路`),
	"320500": strings.Fields(`人民路 干将路 观前街 石路 东吴北路 宝带路 十全街 景德路 长江路 狮山路`),
}

var allStreets = func() []string {
	var out []string
	for _, city := range []string{"330100", "330200", "320100", "320500"} {
		out = append(out, streets[city]...)
	}
	return out
}()

// address is province + city + county name + street + number, e.g.
// 浙江省杭州市西湖区文三路123号, sometimes with a building and flat.
func address(r *rand.Rand, c countyInfo) string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString(c.prefix)
	st, ok := streets[c.CityCode]
	if !ok {
		st = allStreets
	}
	b.WriteString(pick(r, st))
	b.WriteString(strconv.Itoa(1 + r.IntN(899)))
	b.WriteString("号")
	if r.IntN(3) == 0 {
		b.WriteString(strconv.Itoa(1 + r.IntN(30)))
		b.WriteString("幢")
		b.WriteString(strconv.Itoa(1 + r.IntN(6)))
		b.WriteString("单元")
		b.WriteString(strconv.Itoa(1 + r.IntN(30)))
		b.WriteString("0")
		b.WriteString(strconv.Itoa(1 + r.IntN(4)))
		b.WriteString("室")
	}
	return b.String()
}

var mobilePrefixes = strings.Fields(`130 131 132 133 135 136 137 138 139 150 151 152 155 156 157 158 159
166 170 173 176 177 180 181 182 183 185 186 187 188 189 191 195 198 199`)

// cityAreaCodes are the landline area codes (长途区号) of the demo cities.
var cityAreaCodes = map[string]string{"330100": "0571", "330200": "0574", "320100": "025", "320500": "0512"}

func phone(r *rand.Rand, c countyInfo) string {
	if ac, ok := cityAreaCodes[c.CityCode]; ok && r.IntN(10) == 0 {
		n := 8
		return ac + "-" + strconv.Itoa(2+r.IntN(7)) + digits(r, n-1)
	}
	return pick(r, mobilePrefixes) + digits(r, 8)
}

func digits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

// cityCenters are approximate city-centre coordinates (longitude, latitude).
var cityCenters = map[string][2]float64{
	"330100": {120.155, 30.274}, "330200": {121.550, 29.875},
	"320100": {118.797, 32.060}, "320500": {120.585, 31.299},
}

// Organization name parts.
var tradeNames = strings.Fields(`恒达 华信 天成 博远 鼎盛 新创 瑞丰 宏图 中和 远航 金桥 佳禾 汇通 联创 德信
正泰 海纳 锦程 启明 云帆 万象 晨光 蓝海 永信 嘉诚 华腾 同创 卓越 星辰 立德 元亨 东升 泰和 信达 和美`)

// enterpriseLines pair a business line in a name with its GB/T 4754-2017 industry code.
var enterpriseLines = []struct{ word, code string }{
	{"科技", "I6513"}, {"信息技术", "I6531"}, {"网络科技", "I6432"}, {"贸易", "F5191"},
	{"建设工程", "E4710"}, {"餐饮管理", "H6210"}, {"物流", "G5990"}, {"机械制造", "C3490"},
	{"咨询服务", "L7243"}, {"文化传媒", "L7251"}, {"房地产开发", "K7010"}, {"电子", "C3990"},
	{"纺织", "C1711"}, {"医药", "F5153"}, {"食品", "C1499"}, {"新材料", "C2659"},
}

var enterpriseSuffixes = []string{"有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司"}

var shopKinds = []struct{ word, code string }{
	{"餐馆", "H6210"}, {"便利店", "F5212"}, {"理发店", "O8010"}, {"五金店", "F5274"},
	{"水果店", "F5223"}, {"服装店", "F5232"}, {"汽车修理店", "O8111"},
}

var coopKinds = []struct{ word, code string }{
	{"茶叶", "A0164"}, {"蔬菜", "A0141"}, {"水果", "A0151"}, {"水产养殖", "A0412"}, {"花卉苗木", "A0143"},
}

var associations = []string{"软件行业协会", "餐饮行业协会", "个体劳动者协会", "摄影家协会", "青年企业家商会", "老年体育协会"}
var privateNonprofits = []string{"培训学校", "养老服务中心", "社会工作服务中心", "康复中心", "幼儿园"}
var foundations = []string{"慈善基金会", "教育发展基金会", "助学基金会"}
var agencies = []string{"教育局", "财政局", "商务局", "民政局", "卫生健康局", "司法局", "文化和旅游局", "市场监督管理局"}
var institutions = []struct{ word, code string }{
	{"疾病预防控制中心", "Q8431"}, {"图书馆", "R8831"}, {"第一人民医院", "Q8411"},
	{"实验小学", "P8321"}, {"第二中学", "P8331"}, {"档案馆", "R8832"}, {"政务服务中心", "S9221"},
}
