"""The pyarrow client of bench/pull: what a department system written with pyarrow.flight
does to save a pull to a file, timed inside the process (from connect to the file closed,
interpreter start and imports excluded), printed as JSON on stdout.

    pull.py pull --exchange grpc://H:P --token-file F --format arrow|parquet --out FILE
    pull.py compare A B    # two Arrow IPC stream files hold the same rows and schema

pull: connect, GetFlightInfo, DoGet every endpoint into a table (read_all), write it as
an Arrow IPC stream (pa.ipc.new_stream) or as Parquet with Snappy (pq.write_table),
close. compare exits 1 unless the files hold equal tables (rows in any order).
"""

import argparse
import json
import sys
import time

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

OPTIONS = [("grpc.max_receive_message_length", -1)]


def pull(args):
    with open(args.token_file) as f:
        headers = [(b"authorization", b"Bearer " + f.read().strip().encode())]
    command = json.dumps({"dataset": args.dataset, "purpose": args.purpose, "case_ref": "bench"}).encode()
    t0 = time.perf_counter()
    client = flight.connect(args.exchange, generic_options=OPTIONS)
    opts = flight.FlightCallOptions(headers=headers)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), opts)
    tables = [client.do_get(ep.ticket, opts).read_all() for ep in info.endpoints]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    if args.format == "arrow":
        with pa.OSFile(args.out, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    else:
        pq.write_table(table, args.out, compression="snappy")
    client.close()
    elapsed = time.perf_counter() - t0
    json.dump({"pyarrow": pa.__version__, "seconds": elapsed, "rows": table.num_rows}, sys.stdout)
    print()


def read(path):
    if path.endswith(".parquet"):
        return pq.read_table(path)
    with pa.OSFile(path, "rb") as f:
        return pa.ipc.open_stream(f).read_all()


def sorted_table(t):
    t = t.replace_schema_metadata(None)
    return t.sort_by([(name, "ascending") for name in t.column_names]).combine_chunks()


def compare(a, b):
    ta, tb = read(a), read(b)
    if ta.schema.remove_metadata() != tb.schema.remove_metadata():
        sys.exit(f"schemas differ:\n{a}: {ta.schema}\n{b}: {tb.schema}")
    if not sorted_table(ta).equals(sorted_table(tb)):
        sys.exit(f"{a} and {b} hold different rows ({ta.num_rows} and {tb.num_rows})")
    json.dump({"rows": ta.num_rows}, sys.stdout)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["pull", "compare"])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--exchange")
    ap.add_argument("--token-file")
    ap.add_argument("--dataset", default="population.person")
    ap.add_argument("--purpose", default="benchmark-measurement")
    ap.add_argument("--format", choices=["arrow", "parquet"], default="arrow")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.mode == "pull":
        pull(args)
    else:
        compare(*args.files)


if __name__ == "__main__":
    main()
