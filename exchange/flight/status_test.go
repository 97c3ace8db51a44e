package flight

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"govx/exchange"
)

// TestLongReasonsStayTyped: a steward's long policy text (a legal basis of 1,600 Chinese
// characters, 4.8 KB of UTF-8, three times that percent-encoded) is clipped on the Flight
// wire, so the status fits clients' trailer limits and still carries its codes; the text
// stays valid UTF-8.
func TestLongReasonsStayTyped(t *testing.T) {
	long := strings.Repeat("依据", 800)
	err := toStatus(&exchange.Error{Kind: exchange.PermissionDenied, Code: "permission_denied", Message: "the sharing policy denied the request",
		Reasons: []exchange.Reason{{Code: "not_shared", Message: long}, {Code: "no_agreement", Message: long}}})
	st, _ := status.FromError(err)
	if n := len(st.Message()); n > maxStatusMessage {
		t.Fatalf("status message of %d bytes, want at most %d", n, maxStatusMessage)
	}
	if size := proto.Size(st.Proto()); size > 4096 {
		t.Fatalf("status of %d bytes on the wire: pyarrow refuses trailers over 8 KiB once percent-encoded", size)
	}
	own, reasons := errorInfo(err)
	if own == nil || own.Reason != "permission_denied" || len(reasons) != 2 || reasons[0].Code != "not_shared" || reasons[1].Code != "no_agreement" {
		t.Fatalf("codes lost: %v %v", own, reasons)
	}
	for _, r := range reasons {
		if !utf8.ValidString(r.Message) || !strings.HasSuffix(r.Message, "…(cut)") && r.Message != "" {
			t.Fatalf("reason text %q is not a clipped, valid text", r.Message)
		}
	}
	if !utf8.ValidString(st.Message()) {
		t.Fatal("the status message was cut inside a character")
	}
}
