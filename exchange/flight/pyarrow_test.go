package flight

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"govx/exchange/service/servicetest"
	"govx/internal/testenv"
)

// pyarrowCursor is what README.md tells pyarrow users to do: read the cursor from the
// stream's schema metadata, pass it as since; and what a refusal looks like to them.
const pyarrowCursor = `
import json, sys, pyarrow.flight as flight
addr, token, other = sys.argv[1:4]
client = flight.connect("grpc://" + addr)
def opts(tok):
    return flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + tok.encode())])
def pull(cmd, tok):
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(cmd)), opts(tok))
    return client.do_get(info.endpoints[0].ticket, opts(tok)).read_all()
cmd = {"dataset": "population.person", "purpose": "minimum-living-allowance-review"}
table = pull(cmd, token)
cursor = table.schema.metadata[b"govx.cursor"].decode()
changes = pull(dict(cmd, since=cursor), token)
out = {"rows": table.num_rows, "changes": changes.num_rows, "columns": changes.schema.names}
try:
    pull(dict(cmd, since=cursor), other)
except flight.FlightError as e:
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
`

func TestIntegrationPyarrowCursor(t *testing.T) {
	python := testenv.Require(t, testenv.Python)
	f := servicetest.New(t, servicetest.Config{})
	_, lis := serve(t, f, "127.0.0.1:0")
	out, err := exec.Command(python, "-c", pyarrowCursor, lis.Addr().String(),
		f.Token(t, "mz-3301/dibao-review"), f.Token(t, "mz-3201/case-system")).CombinedOutput()
	if err != nil {
		t.Fatalf("pyarrow: %v\n%s", err, out)
	}
	var got struct {
		Rows, Changes int
		Columns       []string
		Error         string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("pyarrow printed %q: %v", out, err)
	}
	if got.Rows != len(f.IDs["3301"]) || got.Changes != 0 || got.Columns[0] != "op" {
		t.Errorf("pyarrow pulls: %+v; want %d rows, then no changes with an op column", got, len(f.IDs["3301"]))
	}
	// pyarrow shows the status text: the code and the message are in it.
	if !strings.Contains(got.Error, "FlightUnauthorizedError") || !strings.Contains(got.Error, "foreign_cursor: the since cursor was issued to another department") {
		t.Errorf("another department's cursor, as pyarrow reports it: %q", got.Error)
	}
}
