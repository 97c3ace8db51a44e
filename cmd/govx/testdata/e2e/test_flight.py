"""End-to-end check of the govx exchange from a department system's side, with pyarrow.

Run by TestIntegrationPyarrow (cmd/govx/e2e_test.go) against a running exchange fed by
the four SQLite connectors. Everything this script expects it computes itself: it reads
the providing departments' SQLite databases with python's sqlite3, maps their native
columns to the dataset fields, drops the rows that fail validation (python-stdnum's
cn.ric and cn.uscc for the identifiers, plus the schema's other checks) and applies the
masks as ARCHITECTURE.md defines them. Any mismatch exits non-zero with a message
saying what differed.

Usage:
  test_flight.py --flight HOST:PORT --http http://HOST:PORT --sources DIR \
                 --tokens FILE --expect-invalid-persons N --expect-invalid-orgs N

FILE is JSON: {"mz-3301/dibao-review": "<token>", ...}.
"""

import argparse
import datetime
import json
import os
import re
import sqlite3
import sys
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc as ipc
from stdnum.cn import ric, uscc

PURPOSE_DIBAO = "minimum-living-allowance-review"

# GB/T 2260 province prefixes (ARCHITECTURE.md, "Identifier rules"); citizen IDs may also
# start with 83.
PROVINCES = {
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82",
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


# --- independent re-implementation of normalization, validation and masks --------------

def normalize_text(s):
    """Trim and fold full-width ASCII and the ideographic space to half-width."""
    if s is None:
        return None
    out = []
    for ch in s:
        o = ord(ch)
        if 0xFF01 <= o <= 0xFF5E:
            ch = chr(o - 0xFEE0)
        elif o == 0x3000:
            ch = " "
        out.append(ch)
    s = "".join(out).strip()
    return s or None


def valid_region(code):
    return code is not None and re.fullmatch(r"[0-9]{6}", code) is not None and code[:2] in PROVINCES


def valid_citizen_id(s):
    """GB 11643 as the exchange enforces it: 18 characters, a real province prefix, a real
    birth date and the MOD 11-2 check character. stdnum's ric.validate also demands that
    the county code existed on the birth date, which GB 11643 validation does not (a
    person born in 1930 keeps the county code issued later), so its parts are used."""
    if s is None or len(s) != 18 or not s[:17].isdigit() or s[:2] not in PROVINCES | {"83"}:
        return False
    if s[-1] != ric.calc_check_digit(s):
        return False
    try:
        ric.get_birth_date(s)
    except Exception:
        return False
    return True


def parse_date(text, fmt):
    try:
        return datetime.datetime.strptime(text, fmt).date()
    except (TypeError, ValueError):
        return None


def mask_id_card(s):
    # Keep the first 6 and last 4 characters: 330106********1234.
    if len(s) <= 10:
        return "*" * len(s)
    return s[:6] + "*" * (len(s) - 10) + s[-4:]


def mask_name(s):
    # Keep the first character, one star per other character: 欧阳娜娜 → 欧***.
    if len(s) <= 1:
        return "*" * len(s)
    return s[0] + "*" * (len(s) - 1)


GENDER = {"男": "1", "女": "2", "未知": "0", "未说明": "9"}
PERSON_STATUS = {"1": "alive", "2": "deceased", "3": "migrated"}
ORG_STATUS = {"存续": "active", "吊销": "revoked", "注销": "cancelled"}
ORG_TYPE = {"企业": "enterprise", "事业单位": "public_institution", "社会组织": "social_organization", "机关": "government"}
PHONE = re.compile(r"^(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$")
ETHNICITY = re.compile(r"^(0[1-9]|[1-4][0-9]|5[0-6])$")


def load_persons(sources):
    """The valid persons of gab.db as canonical records, and how many rows were invalid."""
    db = sqlite3.connect("file:" + os.path.join(sources, "gab.db") + "?mode=ro", uri=True)
    rows = db.execute("SELECT sfzh, xm, xb, csrq, mz, hjdz_qhdm, hjdz_xz, lxdh, ryzt FROM rk_jbxx").fetchall()
    db.close()
    persons, invalid = [], 0
    for sfzh, xm, xb, csrq, mz, qhdm, xz, lxdh, ryzt in rows:
        rec = {
            "id_number": (normalize_text(sfzh) or "").upper(),
            "name": normalize_text(xm),
            "gender": GENDER.get(normalize_text(xb)),
            "birth_date": parse_date(normalize_text(csrq), "%Y%m%d"),
            "ethnicity": normalize_text(mz),
            "household_region": normalize_text(qhdm),
            "address": normalize_text(xz),
            "phone": normalize_text(lxdh),
            "status": PERSON_STATUS.get(normalize_text(ryzt)),
        }
        ok = (
            valid_citizen_id(rec["id_number"])
            and rec["name"] is not None and len(rec["name"]) <= 64
            and rec["gender"] is not None
            and rec["birth_date"] is not None
            and (rec["ethnicity"] is None or ETHNICITY.match(rec["ethnicity"]))
            and valid_region(rec["household_region"])
            and (rec["address"] is None or len(rec["address"]) <= 256)
            and (rec["phone"] is None or PHONE.match(rec["phone"]))
            and rec["status"] is not None
        )
        if ok:
            persons.append(rec)
        else:
            invalid += 1
    return persons, invalid, len(rows)


def load_orgs(sources):
    db = sqlite3.connect("file:" + os.path.join(sources, "scjgj.db") + "?mode=ro", uri=True)
    rows = db.execute("SELECT tyshxydm, qymc, ztlx, fddbr_zjhm, fddbr_xm, djzt, zs_qhdm FROM scztdj").fetchall()
    db.close()
    orgs, invalid = [], 0
    for code, name, kind, rep_id, rep_name, status, region in rows:
        rec = {
            "uscc": (normalize_text(code) or "").upper(),
            "name": normalize_text(name),
            "org_type": ORG_TYPE.get(normalize_text(kind)),
            "legal_rep_id_number": (normalize_text(rep_id) or "").upper(),
            "legal_rep_name": normalize_text(rep_name),
            "status": ORG_STATUS.get(normalize_text(status)),
            "region_code": normalize_text(region),
        }
        ok = (
            uscc.is_valid(rec["uscc"]) and valid_region(rec["uscc"][2:8])
            and valid_citizen_id(rec["legal_rep_id_number"])
            and rec["name"] is not None and rec["org_type"] is not None
            and rec["legal_rep_name"] is not None and rec["status"] is not None
            and valid_region(rec["region_code"])
        )
        if ok:
            orgs.append(rec)
        else:
            invalid += 1
    return orgs, invalid


# --- the exchange, as a department system uses it ---------------------------------------

class Exchange:
    def __init__(self, flight_addr, http_base, tokens):
        self.client = flight.connect("grpc://" + flight_addr,
                                     generic_options=[("grpc.max_receive_message_length", -1)])
        self.http = http_base
        self.tokens = tokens

    def opts(self, subject):
        tok = self.tokens[subject].encode()
        return flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + tok)])

    def list_flights(self, subject):
        out = {}
        for info in self.client.list_flights(options=self.opts(subject)):
            cmd = json.loads(info.descriptor.command)
            out[cmd["dataset"]] = info
        return out

    def pull(self, subject, cmd):
        desc = flight.FlightDescriptor.for_command(json.dumps(cmd))
        info = self.client.get_flight_info(desc, self.opts(subject))
        check(len(info.endpoints) == 1, f"{subject}: {len(info.endpoints)} endpoints, want 1")
        return self.client.do_get(info.endpoints[0].ticket, self.opts(subject)).read_all()

    def pull_http(self, subject, dataset, body):
        req = urllib.request.Request(
            self.http + "/v1/datasets/" + dataset + "/pull", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": "Bearer " + self.tokens[subject], "Content-Type": "application/json",
                     "Accept": "application/vnd.apache.arrow.stream"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            ctype = resp.headers.get("Content-Type", "")
            check(ctype.startswith("application/vnd.apache.arrow.stream"), f"HTTP pull Content-Type {ctype!r}")
            check(resp.headers.get("Govx-Cursor"), "HTTP pull carries no Govx-Cursor header")
            return ipc.open_stream(resp.read()).read_all()


def rows_of(table):
    """The table's rows as a sorted list of tuples in schema order."""
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return sorted(zip(*cols), key=repr)


def compare_rows(what, got_table, want_rows):
    got = rows_of(got_table)
    want = sorted(want_rows, key=repr)
    if len(set(got)) != len(got):
        fail(f"{what}: duplicate rows in the response")
    if got == want:
        return True
    missing = [r for r in want if r not in set(got)]
    extra = [r for r in got if r not in set(want)]
    fail(f"{what}: {len(got)} rows, want {len(want)}; missing {len(missing)} e.g. {missing[:3]}, "
         f"unexpected {len(extra)} e.g. {extra[:3]}")
    return False


def field_meta(field, key):
    md = field.metadata or {}
    v = md.get(key.encode())
    return v.decode() if v is not None else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flight", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--expect-invalid-persons", type=int, required=True)
    ap.add_argument("--expect-invalid-orgs", type=int, required=True)
    a = ap.parse_args()
    with open(a.tokens) as f:
        tokens = json.load(f)
    x = Exchange(a.flight, a.http, tokens)

    persons, invalid_persons, source_rows = load_persons(a.sources)
    orgs, invalid_orgs = load_orgs(a.sources)
    # The generator planted its faults where it says; our own validation must find
    # exactly those, or the expectations below would be built on other rows.
    check(invalid_persons == a.expect_invalid_persons,
          f"validation in python found {invalid_persons} invalid persons, the generator planted {a.expect_invalid_persons}")
    check(invalid_orgs == a.expect_invalid_orgs,
          f"validation in python found {invalid_orgs} invalid organizations, the generator planted {a.expect_invalid_orgs}")
    check(invalid_persons > 0, "no invalid persons in the source: the test would not show they are excluded")
    hz = [p for p in persons if p["household_region"].startswith("3301")]
    nj = [p for p in persons if p["household_region"].startswith("3201")]
    check(len(hz) > 100 and len(nj) > 100, f"too few persons per city to test scoping: {len(hz)} Hangzhou, {len(nj)} Nanjing")

    # 1. The catalog: what each department may discover, with the dataset's row count.
    cat = x.list_flights("mz-3301/dibao-review")
    check(sorted(cat) == ["economy.indicator", "legal_entity.organization", "license.certificate", "population.person", "resource.land_parcel"],
          f"mz-3301 catalog {sorted(cat)}, want population.person, the licences and parcels it may look up, and the two unconditional datasets")
    if "population.person" in cat:
        info = cat["population.person"]
        in_scope = sum(1 for p in persons if p["household_region"].startswith("3301"))
        check(info.total_records == in_scope,
              f"catalog: population.person has {info.total_records} records, want the {in_scope} valid Hangzhou rows of {source_rows} source rows (the catalog counts only the caller's scope)")
        check(info.schema.names[:3] == ["id_number", "name", "gender"], f"catalog schema {info.schema.names}")
    cat = x.list_flights("zj-3205/housing-security")
    check(sorted(cat) == ["economy.indicator", "legal_entity.organization", "license.certificate", "resource.land_parcel"],
          f"zj-3205 catalog {sorted(cat)}, want resource.land_parcel, the licences it may verify and the two unconditional datasets")

    # 2. Hangzhou civil affairs: the agreement's columns, id_number masked, own city only.
    t = x.pull("mz-3301/dibao-review", {"dataset": "population.person", "purpose": PURPOSE_DIBAO})
    check(t.schema.names == ["id_number", "name", "household_region", "birth_date"],
          f"mz-3301 columns {t.schema.names}, want AGR-2026-0001's")
    check(t.schema.field("id_number").type == pa.string() and t.schema.field("birth_date").type == pa.date32(),
          f"mz-3301 types {t.schema}")
    check(field_meta(t.schema.field("id_number"), "govx.mask") == "id_card",
          f"id_number metadata {t.schema.field('id_number').metadata}, want govx.mask id_card")
    check(field_meta(t.schema.field("name"), "govx.mask") in (None, ""),
          f"name is granted unmasked but metadata says {t.schema.field('name').metadata}")
    compare_rows("mz-3301 population.person", t,
                 [(mask_id_card(p["id_number"]), p["name"], p["household_region"], p["birth_date"]) for p in hz])
    flight_rows = rows_of(t)

    # 3. The same pull over HTTP, read as an Arrow IPC stream.
    h = x.pull_http("mz-3301/dibao-review", "population.person", {"purpose": PURPOSE_DIBAO})
    check(h.schema.names == t.schema.names, f"HTTP columns {h.schema.names}, Flight {t.schema.names}")
    check(rows_of(h) == flight_rows, f"HTTP pull returned {h.num_rows} rows differing from Flight's {t.num_rows}")

    # 4. Nanjing civil affairs: its own city only, id_number and name granted unmasked.
    t = x.pull("mz-3201/case-system", {"dataset": "population.person", "purpose": PURPOSE_DIBAO})
    check(t.schema.names == ["id_number", "name", "household_region", "status"], f"mz-3201 columns {t.schema.names}")
    compare_rows("mz-3201 population.person", t,
                 [(p["id_number"], p["name"], p["household_region"], p["status"]) for p in nj])

    # 5. A caller's own filter narrows within the scope and can never widen it.
    t = x.pull("mz-3301/dibao-review", {"dataset": "population.person", "purpose": PURPOSE_DIBAO,
                                        "columns": ["id_number", "household_region"],
                                        "filter": [{"column": "household_region", "op": "prefix", "value": "3201"}]})
    check(t.num_rows == 0, f"mz-3301 filtering on Nanjing got {t.num_rows} rows, want none")

    # 6. No agreement: permission denied carrying the policy's reason code.
    try:
        x.pull("zj-3205/housing-security", {"dataset": "population.person", "purpose": PURPOSE_DIBAO})
        fail("zj-3205 (no agreement for population.person) was allowed to pull it")
    except flight.FlightUnauthorizedError as e:
        msg = str(e)
        check("permission_denied" in msg and "no_agreement" in msg,
              f"zj-3205 denial message lacks permission_denied/no_agreement: {msg!r}")
    except flight.FlightError as e:
        fail(f"zj-3205 denial is {type(e).__name__}, want FlightUnauthorizedError (PermissionDenied): {e}")

    # Over HTTP the same denial is a 403 with the reason in the JSON body.
    try:
        x.pull_http("zj-3205/housing-security", "population.person", {"purpose": PURPOSE_DIBAO})
        fail("zj-3205 was allowed to pull population.person over HTTP")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        reasons = [r["code"] for r in body["error"].get("reasons", [])]
        check(e.code == 403 and body["error"]["code"] == "permission_denied" and reasons == ["no_agreement"],
              f"zj-3205 HTTP denial {e.code} {body}")

    # 7. An unconditional dataset without purpose: personal fields masked by the schema's
    # defaults, rows of the department's own city.
    cols = ["uscc", "name", "legal_rep_id_number", "legal_rep_name", "region_code", "status"]
    t = x.pull("mz-3301/dibao-review", {"dataset": "legal_entity.organization", "columns": cols})
    check(t.schema.names == cols, f"organization columns {t.schema.names}")
    want = [(o["uscc"], o["name"], mask_id_card(o["legal_rep_id_number"]), mask_name(o["legal_rep_name"]),
             o["region_code"], o["status"]) for o in orgs if o["region_code"].startswith("3301")]
    check(len(want) > 10, f"only {len(want)} Hangzhou organizations in the source")
    compare_rows("mz-3301 legal_entity.organization", t, want)

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {len(persons)} valid persons ({invalid_persons} invalid excluded), {len(hz)} Hangzhou, "
          f"{len(nj)} Nanjing; {len(orgs)} organizations")


if __name__ == "__main__":
    main()
