package schemas

import "testing"

// BenchmarkNormalizeText: connectors normalize every text value of every row; text that
// does not change must not allocate.
func BenchmarkNormalizeText(b *testing.B) {
	for _, in := range []string{"浙江省杭州市西湖区文三路123号", "330106199003071236", "ＡＢＣ１２３"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NormalizeText(in)
			}
		})
	}
}

func TestNormalizeTextDoesNotAllocateForPlainText(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { NormalizeText(" 浙江省杭州市西湖区文三路123号 ") }); n != 0 {
		t.Fatalf("NormalizeText allocated %v times for text that does not fold", n)
	}
	if got := NormalizeText("ＡＢＣ\u3000１２３"); got != "ABC 123" {
		t.Fatalf("full-width text: %q", got)
	}
}
