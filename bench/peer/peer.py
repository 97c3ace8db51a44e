"""The C++ Flight peer of bench/peer: pyarrow's FlightServerBase (Arrow's C++ Flight
server) serving one table held in memory, with no auth, no policy and no audit.

The table is an Arrow IPC file that bench/peer writes beforehand: the same persons, the
same six columns and the same two masks as the exchange's pull of the bench agreement,
already applied. Every DoGet streams the whole table in batches of --batch-rows rows,
whatever the ticket says; GetFlightInfo answers any descriptor with one endpoint.

    python bench/peer/peer.py --table FILE [--port 0] [--batch-rows 65536]

It prints "listening PORT" once it serves, then serves until stdin closes or it is
killed.
"""

import argparse
import sys
import threading

import pyarrow as pa
import pyarrow.flight as flight


class Peer(flight.FlightServerBase):
    def __init__(self, location, table, batch_rows):
        super().__init__(location)
        self._table = table
        self._batches = table.to_batches(max_chunksize=batch_rows)

    def get_flight_info(self, context, descriptor):
        endpoint = flight.FlightEndpoint(b"all", [])
        return flight.FlightInfo(self._table.schema, descriptor, [endpoint],
                                 self._table.num_rows, self._table.nbytes)

    def do_get(self, context, ticket):
        return flight.GeneratorStream(self._table.schema, iter(self._batches))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", required=True, help="Arrow IPC file to serve")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--batch-rows", type=int, default=65536)
    args = ap.parse_args()
    # Read into memory (not memory-mapped): the exchange serves from memory too.
    with pa.OSFile(args.table) as f:
        table = pa.ipc.open_file(f).read_all()
    server = Peer(f"grpc+tcp://{args.host}:{args.port}", table, args.batch_rows)
    print(f"listening {server.port}", flush=True)
    # Serve until the parent closes our stdin (or kills us).
    threading.Thread(target=server.serve, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
