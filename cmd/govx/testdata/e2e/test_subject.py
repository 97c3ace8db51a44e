"""End-to-end check of the "one number" subject view (一号式) over HTTP.

Run by TestIntegrationPyarrow (cmd/govx/e2e_test.go) after test_flight.py, against the
same running exchange fed by the SQLite connectors. It asks POST /v1/subjects/person
about generated persons and compares every returned value with values it computes
itself from the providing departments' own tables (gab rk_jbxx, scjgj scztdj, zrzyb
bdc_zd, zwfw dzzz_zzxx, read with python's sqlite3, native columns mapped here), with
the row scope and masks the agreements say:

  mz-3301/dibao-review, granted all four registers for minimum-living-allowance-review
    person         AGR-2026-0001  id_number, name, household_region, birth_date;
                                  id_number masked id_card; Hangzhou (3301) only
    organizations  AGR-2026-0014  shared unconditionally: every column, the agreement
                                  unmasking legal_rep_*; Hangzhou only
    parcels        AGR-2026-0015  7 columns, holder_id_number unmasked; Hangzhou only
    licences       AGR-2026-0009  9 columns, holder_* unmasked; nationwide
  sw-33/tax, granted only the organization register (and licences without the
    holder's ID number) for tax-registration-check: the organizations part (AGR-2026-0006,
    Zhejiang, legal_rep_* unmasked) and the other parts withheld with the policy's
    reasons (no_agreement; filter_not_granted for the licences, whose link column
    holder_id_number it is not granted).

Usage: test_subject.py --http http://HOST:PORT --sources DIR --tokens FILE
"""

import argparse
import decimal
import json
import os
import re
import sqlite3
import sys
import urllib.error
import urllib.request

from test_flight import (GENDER, PERSON_STATUS, ORG_STATUS, ORG_TYPE, mask_id_card, normalize_text,
                         parse_date, valid_citizen_id, valid_region)
from stdnum.cn import uscc

PURPOSE_DIBAO = "minimum-living-allowance-review"
PURPOSE_TAX = "tax-registration-check"
MZ, SW = "mz-3301/dibao-review", "sw-33/tax"

RIGHT_TYPE = {"国有建设用地使用权": "use_right", "国有农用地使用权": "use_right", "集体建设用地使用权": "use_right",
              "宅基地使用权": "use_right", "集体土地所有权": "ownership", "国有土地所有权": "ownership"}
LICENCE_TYPE = {"营业执照": "business_licence", "事业单位法人证书": "public_institution_certificate",
                "社会组织法人登记证书": "social_organization_certificate", "统一社会信用代码证书": "uscc_certificate",
                "食品经营许可证": "food_business_permit", "建筑工程施工许可证": "construction_permit",
                "排污许可证": "pollutant_discharge_permit", "医疗机构执业许可证": "medical_institution_licence",
                "不动产权证书": "real_estate_certificate", "结婚证": "marriage_certificate",
                "机动车驾驶证": "driving_licence", "教师资格证书": "teacher_qualification_certificate",
                "医师执业证书": "physician_practising_certificate"}
LICENCE_STATUS = {"有效": "valid", "暂扣": "suspended", "吊销": "revoked", "注销": "revoked", "过期": "expired"}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def db_rows(sources, dept, sql):
    db = sqlite3.connect("file:" + os.path.join(sources, dept + ".db") + "?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def upper_id(s):
    s = normalize_text(s)
    return s.upper() if s is not None else None


def dec(v, scale):
    """A source number as the decimal(p, scale) the register holds, or None."""
    if v is None or (isinstance(v, str) and normalize_text(v) is None):
        return None
    return decimal.Decimal(str(v).strip()).quantize(decimal.Decimal(1).scaleb(-scale))


def iso(d):
    return d.isoformat() if d is not None else None


# --- the registers, computed from the native tables -------------------------------------

def load_persons(sources):
    persons = {}
    for sfzh, xm, xb, csrq, mz, qhdm, ryzt in db_rows(sources, "gab", "SELECT sfzh, xm, xb, csrq, mz, hjdz_qhdm, ryzt FROM rk_jbxx"):
        rec = {"id_number": upper_id(sfzh) or "", "name": normalize_text(xm),
               "birth_date": parse_date(normalize_text(csrq), "%Y%m%d"), "household_region": normalize_text(qhdm)}
        mz = normalize_text(mz)
        if (valid_citizen_id(rec["id_number"]) and rec["name"] and GENDER.get(normalize_text(xb))
                and rec["birth_date"] and valid_region(rec["household_region"])
                and (mz is None or re.match(r"^(0[1-9]|[1-4][0-9]|5[0-6])$", mz))
                and PERSON_STATUS.get(normalize_text(ryzt))):
            persons[rec["id_number"]] = rec
    return persons


def load_orgs(sources):
    out = []
    for code, name, kind, rep_id, rep_name, zczb, clrq, djzt, qhdm, zs, hydm, gxsj in db_rows(
            sources, "scjgj", "SELECT tyshxydm, qymc, ztlx, fddbr_zjhm, fddbr_xm, zczb, clrq, djzt, zs_qhdm, zs, hydm, gxsj FROM scztdj"):
        rec = {"uscc": upper_id(code) or "", "name": normalize_text(name), "org_type": ORG_TYPE.get(normalize_text(kind)),
               "legal_rep_id_number": upper_id(rep_id) or "", "legal_rep_name": normalize_text(rep_name),
               "registered_capital": dec(zczb, 4), "established_on": parse_date(normalize_text(clrq), "%Y-%m-%d"),
               "status": ORG_STATUS.get(normalize_text(djzt)), "region_code": normalize_text(qhdm),
               "address": normalize_text(zs), "industry_code": normalize_text(hydm),
               # The connector reads gxsj in UTC (timezone: UTC); the exchange answers RFC 3339.
               "updated_at": normalize_text(gxsj).replace(" ", "T") + "Z" if normalize_text(gxsj) else None}
        if (uscc.is_valid(rec["uscc"]) and valid_region(rec["uscc"][2:8]) and valid_citizen_id(rec["legal_rep_id_number"])
                and rec["name"] and rec["org_type"] and rec["legal_rep_name"] and rec["status"]
                and valid_region(rec["region_code"])):
            out.append(rec)
    return out


def load_parcels(sources):
    out = []
    for zddm, qhdm, tdyt, zdmj, qllx, qlr_uscc, qlr_id, djrq in db_rows(
            sources, "zrzyb", "SELECT zddm, qhdm, tdyt, zdmj, qllx, qlr_tyshxydm, qlr_sfzh, djrq FROM bdc_zd"):
        rec = {"parcel_code": upper_id(zddm), "region_code": normalize_text(qhdm), "land_use": normalize_text(tdyt),
               "area_m2": dec(zdmj, 2), "right_type": RIGHT_TYPE.get(normalize_text(qllx)),
               "holder_id_number": upper_id(qlr_id), "holder_uscc": upper_id(qlr_uscc),
               "registered_on": parse_date(normalize_text(djrq), "%Y/%m/%d")}
        one_holder = (rec["holder_uscc"] is None) != (rec["holder_id_number"] is None)
        if (one_holder and rec["registered_on"] and rec["right_type"] and valid_region(rec["region_code"])
                and (rec["holder_id_number"] is None or valid_citizen_id(rec["holder_id_number"]))
                and (rec["holder_uscc"] is None or uscc.is_valid(rec["holder_uscc"]))):
            out.append(rec)
    return out


def load_licences(sources):
    out = []
    for zzbh, zzlx, h_uscc, h_id, h_name, fzjg, fzjg_qhdm, fzrq, yxqz, zzzt, zzwjzy in db_rows(
            sources, "zwfw", "SELECT zzbh, zzlx, czzt_tyshxydm, czzt_sfzh, czztmc, fzjgdm, fzjg_qhdm, fzrq, yxqz, zzzt, zzwjzy FROM dzzz_zzxx"):
        rec = {"licence_no": upper_id(zzbh), "licence_type": LICENCE_TYPE.get(normalize_text(zzlx)),
               "holder_uscc": upper_id(h_uscc), "holder_id_number": upper_id(h_id), "holder_name": normalize_text(h_name),
               "issuer": normalize_text(fzjg), "issuer_region": normalize_text(fzjg_qhdm),
               "issued_on": parse_date(normalize_text(fzrq), "%Y-%m-%d"),
               "valid_until": parse_date(normalize_text(yxqz), "%Y-%m-%d") if normalize_text(yxqz) else None,
               "status": LICENCE_STATUS.get(normalize_text(zzzt)), "content_digest": normalize_text(zzwjzy)}
        one_holder = (rec["holder_uscc"] is None) != (rec["holder_id_number"] is None)
        if (one_holder and rec["licence_type"] and rec["issued_on"] and rec["status"] and rec["holder_name"]
                and re.fullmatch(r"[0-9a-f]{64}", rec["content_digest"] or "")
                and (rec["holder_id_number"] is None or valid_citizen_id(rec["holder_id_number"]))
                and (rec["holder_uscc"] is None or uscc.is_valid(rec["holder_uscc"]))):
            out.append(rec)
    return out


# --- what each department must get --------------------------------------------------------

def project(rec, cols, masks=None):
    out = {}
    for c in cols:
        v = rec[c]
        if masks and c in masks and v is not None:
            v = masks[c](v)
        out[c] = iso(v) if hasattr(v, "isoformat") else v
    return out


# legal_entity.organization is shared unconditionally (无条件共享): every column of the
# schema, personal ones masked by default; the agreements only unmask (both unmask the
# legal representative's ID number and name, the only personal columns) and scope.
ORG_COLS = ["uscc", "name", "org_type", "legal_rep_id_number", "legal_rep_name", "registered_capital", "established_on",
            "status", "region_code", "address", "industry_code", "updated_at"]
PARCEL_COLS = ["parcel_code", "region_code", "land_use", "area_m2", "right_type", "holder_id_number", "registered_on"]
LICENCE_COLS = ["licence_no", "licence_type", "holder_uscc", "holder_id_number", "holder_name", "issuer", "issued_on", "valid_until", "status"]


def want_mz(reg, pid):
    """mz-3301's view of pid: part → records, in key order."""
    persons, orgs, parcels, licences = reg
    p = persons.get(pid)
    return {
        "person": [project(p, ["id_number", "name", "household_region", "birth_date"], {"id_number": mask_id_card})]
        if p and p["household_region"].startswith("3301") else [],
        "organizations": sorted((project(o, ORG_COLS) for o in orgs
                                 if o["legal_rep_id_number"] == pid and o["region_code"].startswith("3301")), key=lambda r: r["uscc"]),
        "parcels": sorted((project(x, PARCEL_COLS) for x in parcels
                           if x["holder_id_number"] == pid and x["region_code"].startswith("3301")), key=lambda r: r["parcel_code"]),
        "licences": sorted((project(x, LICENCE_COLS) for x in licences if x["holder_id_number"] == pid),
                           key=lambda r: r["licence_no"]),
    }


def same_value(got, want):
    if isinstance(want, decimal.Decimal):
        try:
            return got is not None and not isinstance(got, bool) and decimal.Decimal(str(got)) == want
        except decimal.InvalidOperation:
            return False
    return got == want and type(got) is type(want)


def compare_part(who, part, got, want):
    if not check(len(got) == len(want), f"{who}: part {part} has {len(got)} records, want {len(want)}: got {got}, want {want}"):
        return
    for i, (g, w) in enumerate(zip(got, want)):
        check(sorted(g) == sorted(w), f"{who}: part {part} record {i} has columns {sorted(g)}, want {sorted(w)}")
        for c, wv in w.items():
            check(same_value(g.get(c), wv), f"{who}: part {part} record {i} {c} = {g.get(c)!r}, want {wv!r}")


def subject_person(http, token, pid, purpose):
    body = {"id": pid, "purpose": purpose, "case_ref": "330106-2026-000123"}
    req = urllib.request.Request(http + "/v1/subjects/person", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        check(resp.headers.get("Content-Type", "").startswith("application/json"),
              f"subject view Content-Type {resp.headers.get('Content-Type')!r}")
        return json.loads(resp.read())


def check_view(who, view, pid, want):
    """Compares a view with the expected parts (part → records, or part → reason code of a
    withheld part)."""
    check(view.get("kind") == "person" and view.get("id") == pid and view.get("request_id"),
          f"{who}: view header {{kind {view.get('kind')!r}, id {view.get('id')!r}, request_id {view.get('request_id')!r}}}")
    parts = view.get("parts", [])
    names = [p["part"] for p in parts]
    check(names == ["person", "organizations", "parcels", "licences"], f"{who}: parts {names}")
    datasets = {"person": "population.person", "organizations": "legal_entity.organization",
                "parcels": "resource.land_parcel", "licences": "license.certificate"}
    for p in parts:
        name, w = p["part"], want.get(p["part"])
        check(p.get("dataset") == datasets.get(name), f"{who}: part {name} dataset {p.get('dataset')!r}")
        if isinstance(w, str):
            codes = [r.get("code") for r in p.get("reasons") or []]
            check(p.get("withheld") is True and w in codes and not p.get("records"),
                  f"{who}: part {name} should be withheld with reason {w}, got withheld={p.get('withheld')} reasons={codes} "
                  f"records={len(p.get('records') or [])}")
            for r in p.get("reasons") or []:
                check(r.get("message"), f"{who}: part {name} reason {r.get('code')} carries no message")
        else:
            if check(not p.get("withheld"), f"{who}: part {name} withheld: {p.get('reasons')}"):
                check(p.get("agreement", "").startswith("AGR-"), f"{who}: part {name} names no agreement: {p.get('agreement')!r}")
                compare_part(who, name, p.get("records") or [], w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--tokens", required=True)
    a = ap.parse_args()
    with open(a.tokens) as f:
        tokens = json.load(f)
    persons = load_persons(a.sources)
    orgs, parcels, licences = load_orgs(a.sources), load_parcels(a.sources), load_licences(a.sources)
    reg = (persons, orgs, parcels, licences)

    # Who is linked to what, everywhere (before any scope).
    reps = {o["legal_rep_id_number"] for o in orgs if o["region_code"].startswith("3301")}
    holders = {x["holder_id_number"] for x in parcels if x["holder_id_number"]}
    licensed = {x["holder_id_number"] for x in licences if x["holder_id_number"]}
    hz = {pid for pid, p in persons.items() if p["household_region"].startswith("3301")}

    # The applicant: a Hangzhou person who is the legal representative of a Hangzhou
    # organization, holds parcels and holds licences.
    primary = sorted(hz & reps & holders & licensed)
    if not check(primary, "no Hangzhou person in the generated registers is a legal representative holding parcels and licences"):
        sys.exit(1)
    pid = max(primary, key=lambda i: (sum(len(v) for v in want_mz(reg, i).values()), i))
    want = want_mz(reg, pid)
    for part, recs in want.items():
        check(recs or part == "parcels", f"the applicant {pid} has no {part} within mz-3301's scope")
    view = subject_person(a.http, tokens[MZ], pid, PURPOSE_DIBAO)
    check_view(f"{MZ} applicant", view, pid, want)
    held = [x for x in parcels if x["holder_id_number"] == pid]
    print(f"applicant: {len(want['organizations'])} organizations, {len(held)} parcels held "
          f"({len(want['parcels'])} in Hangzhou), {len(want['licences'])} licences")

    # Every part's values, across many subjects: every Hangzhou legal representative and
    # Hangzhou parcel holder, some licence holders, and persons outside Hangzhou (their
    # person record out of scope, their licences not).
    hz_parcel_holders = {x["holder_id_number"] for x in parcels if x["holder_id_number"] and x["region_code"].startswith("3301")}
    others = sorted(licensed - hz)[:15]
    subjects = sorted(((reps | hz_parcel_holders) & set(persons)) | set(sorted(hz & licensed)[:15]) | set(others))[:150]
    counts = {"person": 0, "organizations": 0, "parcels": 0, "licences": 0}
    for s in subjects:
        w = want_mz(reg, s)
        for k, v in w.items():
            counts[k] += len(v)
        check_view(f"{MZ} {s}", subject_person(a.http, tokens[MZ], s, PURPOSE_DIBAO), s, w)
    check(all(counts.values()), f"the subjects checked returned no records of some part: {counts}")
    print(f"{len(subjects)} subject views compared: {counts}")

    # The tax bureau: the organizations it is granted (Zhejiang, legal representative
    # unmasked), the rest withheld with the policy's reasons.
    sw_orgs = sorted((project(o, ORG_COLS) for o in orgs
                      if o["legal_rep_id_number"] == pid and o["region_code"].startswith("33")), key=lambda r: r["uscc"])
    view = subject_person(a.http, tokens[SW], pid, PURPOSE_TAX)
    check_view(f"{SW} applicant", view, pid, {"person": "no_agreement", "organizations": sw_orgs,
                                               "parcels": "no_agreement", "licences": "filter_not_granted"})

    # A malformed citizen ID is refused before any part is decided.
    try:
        subject_person(a.http, tokens[MZ], pid[:-1] + ("0" if pid[-1] != "0" else "1"), PURPOSE_DIBAO)
        fail("a citizen ID with a wrong check character was answered")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        check(e.code == 400 and body["error"]["code"] == "bad_subject_id", f"wrong check character: {e.code} {body}")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print(f"ok: subject views of {len(subjects) + 1} persons match the source tables")


if __name__ == "__main__":
    main()
