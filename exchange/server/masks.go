package server

import (
	"context"
	"slices"
	"time"

	"govx/exchange/mask"
	"govx/exchange/store"
)

// maskPollInterval is how often the exchange looks for a new policy revision whose
// agreements use other masks.
const maskPollInterval = 2 * time.Second

// agreementMasks returns, per dataset, the masks the agreements in force apply: each
// granted column's mask (the agreement's override, else the schema's default) unless
// the column is granted unmasked, with the consumer department's key for the hash
// mask. The store keeps these materialized, so a pull under any agreement is served
// from masked columns computed once per segment.
func (x *Exchange) agreementMasks() map[string][]store.MaskedColumn {
	out := map[string][]store.MaskedColumn{}
	for _, a := range x.policy.Bundle().Agreements {
		t := x.tables[a.Dataset]
		if t == nil {
			continue
		}
		d := t.Dataset()
		for _, col := range a.Columns {
			f, ok := d.Field(col)
			if !ok || slices.Contains(a.Unmasked, col) {
				continue
			}
			m := f.Mask
			if o, ok := a.Masks[col]; ok {
				m = o
			}
			if m == "" || m == mask.Null {
				continue
			}
			mc := store.MaskedColumn{Column: col, Mask: m}
			if m == mask.Hash {
				mc.Key = x.svc.MaskKey(a.Consumer)
			}
			out[a.Dataset] = append(out[a.Dataset], mc)
		}
	}
	return out
}

// maskLoop gives the tables the agreements' masks at start and after every policy
// revision, off the request path: masking the segments held takes a while.
func (x *Exchange) maskLoop(ctx context.Context) {
	rev := ""
	t := time.NewTicker(maskPollInterval)
	defer t.Stop()
	for {
		if r := x.policy.Revision(); r != rev {
			rev = r
			ms := x.agreementMasks()
			for id, t := range x.tables {
				if err := t.MaterializeMasks(ms[id]); err != nil {
					// The policy checks masks against the schema at load; a mask it lets
					// through but the store refuses is masked per pull instead.
					x.log.Warn("store: agreement masks not materialized", "dataset", id, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
