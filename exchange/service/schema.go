package service

import (
	"context"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/store"
)

// DatasetSchema returns a dataset's full Arrow schema, as the catalog shows it.
func (s *Service) DatasetSchema(id string) (*arrow.Schema, error) {
	d, _, err := s.dataset(id)
	if err != nil {
		return nil, err
	}
	return d.ArrowSchema(), nil
}

// GrantSchema returns the schema a grant's stream will have.
func (s *Service) GrantSchema(g *Grant) (*arrow.Schema, error) {
	_, t, err := s.dataset(g.Dataset)
	if err != nil {
		return nil, err
	}
	spec := store.Spec{Columns: g.Columns, Masks: g.Masks, MaskKey: s.departmentMaskKey(g.Subject.Department)}
	snap := t.Snapshot()
	defer snap.Release()
	if g.Since != nil {
		return snap.ChangesSchema(spec)
	}
	return snap.OutputSchema(spec)
}

// Schema decides a read as a pull would (audited) and returns the schema the caller
// would receive, without data and so without counting rows.
func (s *Service) Schema(ctx context.Context, c Caller, cmd exchange.PullCmd) (*arrow.Schema, error) {
	cmd.Since = ""
	g, err := s.open(ctx, c, cmd, false)
	if err != nil {
		return nil, err
	}
	// No data follows; closing the request keeps it out of the unfinished streams.
	s.auditComplete(ctx, g, 0, 0, time.Now(), nil)
	return s.GrantSchema(g)
}
