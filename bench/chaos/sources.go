package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// register is one base register as the run changes and checks it: its department's
// table, the key columns, the one column the run changes (and the dataset's names for
// them), and the agreement the checker reads it under.
type register struct {
	dataset   string
	table     string   // chaos_<dept>.<table>
	srcKey    []string // source key columns
	srcCol    string   // the changed column in the source
	key       []string // dataset key columns
	col       string   // the changed column in the dataset
	decimal   int32    // scale of a decimal column; 0: text
	keys      [][]string
	newValue  func(n int64) string
	changedAt atomic.Int64 // changes made
}

var registers = []*register{
	{dataset: "population.person", table: "chaos_gab.rk_jbxx", srcKey: []string{"sfzh"}, srcCol: "lxdh",
		key: []string{"id_number"}, col: "phone",
		newValue: func(n int64) string { return fmt.Sprintf("139%08d", n%100000000) }},
	{dataset: "legal_entity.organization", table: "chaos_scjgj.scztdj", srcKey: []string{"tyshxydm"}, srcCol: "zs",
		key: []string{"uscc"}, col: "address",
		newValue: func(n int64) string { return fmt.Sprintf("浙江省杭州市上城区演练路%d号", n) }},
	{dataset: "resource.land_parcel", table: "chaos_zrzyb.bdc_zd", srcKey: []string{"zddm"}, srcCol: "zdmj",
		key: []string{"parcel_code"}, col: "area_m2", decimal: 2,
		newValue: func(n int64) string { return fmt.Sprintf("%d.25", 100+n) }},
	{dataset: "economy.indicator", table: "chaos_tjj.tj_zbsj", srcKey: []string{"zbdm", "qhdm", "tjq"}, srcCol: "zbz",
		key: []string{"indicator_code", "region_code", "period"}, col: "value", decimal: 4,
		newValue: func(n int64) string { return fmt.Sprintf("%d.5000", 1000+n) }},
}

// sources are the four department databases.
type sources struct {
	db      *sql.DB
	seq     atomic.Int64
	persons struct{ hangzhou, ningbo [][2]string } // (id, name) for lookups and verifications
}

func openSources(ctx context.Context, rawURL string) (*sources, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net, cfg.Addr = "tcp", u.Host
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	s := &sources{db: db}
	for _, r := range registers {
		rows, err := db.QueryContext(ctx, "SELECT "+strings.Join(r.srcKey, ", ")+" FROM "+r.table)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("reading the keys of %s: %w", r.table, err)
		}
		for rows.Next() {
			k := make([]string, len(r.srcKey))
			ptrs := make([]any, len(k))
			for i := range k {
				ptrs[i] = &k[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				db.Close()
				return nil, err
			}
			r.keys = append(r.keys, k)
		}
		rows.Close()
		if len(r.keys) == 0 {
			db.Close()
			return nil, fmt.Errorf("%s holds no rows", r.table)
		}
	}
	for prefix, dst := range map[string]*[][2]string{"3301": &s.persons.hangzhou, "3302": &s.persons.ningbo} {
		rows, err := db.QueryContext(ctx, "SELECT sfzh, xm FROM chaos_gab.rk_jbxx WHERE hjdz_qhdm LIKE ? ORDER BY sfzh LIMIT 300", prefix+"%")
		if err != nil {
			db.Close()
			return nil, err
		}
		for rows.Next() {
			var p [2]string
			if err := rows.Scan(&p[0], &p[1]); err != nil {
				rows.Close()
				db.Close()
				return nil, err
			}
			*dst = append(*dst, p)
		}
		rows.Close()
	}
	if len(s.persons.hangzhou) == 0 || len(s.persons.ningbo) == 0 {
		db.Close()
		return nil, fmt.Errorf("the generated population register has no Hangzhou or Ningbo persons")
	}
	return s, nil
}

func (s *sources) close() { s.db.Close() }

func (s *sources) changed() int64 {
	var n int64
	for _, r := range registers {
		n += r.changedAt.Load()
	}
	return n
}

// mutate changes perSecond random rows until ctx ends: the changed column gets a value
// never used before and the update time moves to now, as a department's own system
// would update a record.
func (s *sources) mutate(ctx context.Context, perSecond float64, rng *rand.Rand) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		r := registers[rng.IntN(len(registers))]
		k := r.keys[rng.IntN(len(r.keys))]
		where := make([]string, len(r.srcKey))
		args := []any{r.newValue(s.seq.Add(1))}
		for i, c := range r.srcKey {
			where[i] = c + " = ?"
			args = append(args, k[i])
		}
		q := "UPDATE " + r.table + " SET " + r.srcCol + " = ?, gxsj = NOW() WHERE " + strings.Join(where, " AND ")
		if _, err := s.db.ExecContext(context.WithoutCancel(ctx), q, args...); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		r.changedAt.Add(1)
	}
}

// final reads the changed column of every row of r: key (joined by "|") -> value, ""
// for NULL.
func (s *sources) final(ctx context.Context, r *register) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+strings.Join(r.srcKey, ", ")+", "+r.srcCol+" FROM "+r.table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		k := make([]string, len(r.srcKey))
		var v sql.NullString
		ptrs := make([]any, 0, len(k)+1)
		for i := range k {
			ptrs = append(ptrs, &k[i])
		}
		if err := rows.Scan(append(ptrs, &v)...); err != nil {
			return nil, err
		}
		out[strings.Join(k, "|")] = v.String
	}
	return out, rows.Err()
}
