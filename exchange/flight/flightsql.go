package flight

import (
	"context"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/flight/flightsql"
	"github.com/apache/arrow/go/v17/arrow/flight/flightsql/schema_ref"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"govx/exchange"
	"govx/exchange/service"
)

// Flight SQL on the exchange's Flight port answers aggregate queries (action aggregate)
// to BI tools and notebooks (ADBC's Flight SQL driver, JDBC, Superset): statements are
// aggregate SQL, planned and executed by exchange/service; the catalog calls list only
// what the caller may aggregate. Flight SQL commands and tickets are protobuf Any
// messages of the arrow.flight.protocol.sql package; every other descriptor, ticket and
// action is govx's own and goes on to the plain Flight service unchanged.
//
// The purpose (and optionally the case) of the queries travel in call headers, as ADBC
// sets them with adbc.flight.sql.rpc.call_header.<name>.
const (
	HeaderPurpose = "govx-purpose"
	HeaderCaseRef = "govx-case-ref"
)

// SQLCatalog is the one Flight SQL catalog; its db schemas are the base registers
// (population, resource, …) and their tables the entities, so a dataset id is
// <schema>.<table> as SQL writes it.
const SQLCatalog = "govx"

const sqlTypePrefix = "type.googleapis.com/arrow.flight.protocol.sql."

// isFlightSQL reports whether a descriptor's command or a ticket is a Flight SQL message.
func isFlightSQL(b []byte) bool {
	var a anypb.Any
	return len(b) > 0 && proto.Unmarshal(b, &a) == nil && strings.HasPrefix(a.GetTypeUrl(), sqlTypePrefix)
}

// sqlActions are the Flight SQL action types: routed to the Flight SQL server, which
// refuses them as unimplemented (prepared statements, transactions), so that clients
// fall back to plain statements.
var sqlActions = map[string]bool{
	flightsql.CreatePreparedStatementActionType: true, flightsql.ClosePreparedStatementActionType: true,
	flightsql.CreatePreparedSubstraitPlanActionType: true, flightsql.CancelQueryActionType: true,
	flightsql.BeginSavepointActionType: true, flightsql.BeginTransactionActionType: true,
	flightsql.EndTransactionActionType: true, flightsql.EndSavepointActionType: true,
}

// sqlServer implements Flight SQL over the service. It embeds BaseServer: what it does
// not override answers Unimplemented.
type sqlServer struct {
	flightsql.BaseServer
	s *Server
}

func newSQLServer(s *Server) flight.FlightServer {
	srv := &sqlServer{s: s}
	srv.Alloc = s.mem
	for id, v := range map[flightsql.SqlInfo]any{
		flightsql.SqlInfoFlightSqlServerName:         "govx",
		flightsql.SqlInfoFlightSqlServerVersion:      "1",
		flightsql.SqlInfoFlightSqlServerArrowVersion: "17",
		flightsql.SqlInfoFlightSqlServerReadOnly:     true,
		flightsql.SqlInfoFlightSqlServerSql:          true,
		flightsql.SqlInfoFlightSqlServerSubstrait:    false,
		flightsql.SqlInfoFlightSqlServerTransaction:  int32(0), // none
		flightsql.SqlInfoFlightSqlServerCancel:       false,
		flightsql.SqlInfoDDLCatalog:                  false,
		flightsql.SqlInfoDDLSchema:                   false,
		flightsql.SqlInfoDDLTable:                    false,
		flightsql.SqlInfoIdentifierQuoteChar:         "`",
	} {
		_ = srv.RegisterSqlInfo(id, v) // every value is of a type RegisterSqlInfo takes
	}
	return flightsql.NewFlightServerWithAllocator(srv, s.mem)
}

// aggregateCmd is the statement with the purpose and case from the call headers: each
// as a plain header (printable ASCII, what BI tools set) or a binary one, name + "-bin"
// (any UTF-8: a Chinese case reference; govx's own client sends these), which wins.
func aggregateCmd(ctx context.Context, sql string) service.AggregateCmd {
	cmd := service.AggregateCmd{SQL: sql}
	md, _ := metadata.FromIncomingContext(ctx)
	header := func(name string) string {
		for _, key := range []string{name + "-bin", name} {
			if v := md.Get(key); len(v) == 1 {
				return v[0]
			}
		}
		return ""
	}
	cmd.Purpose, cmd.CaseRef = header(HeaderPurpose), header(HeaderCaseRef)
	return cmd
}

// GetFlightInfoStatement decides the aggregate query (audited) and returns a ticket
// bound to the caller.
func (q *sqlServer) GetFlightInfoStatement(ctx context.Context, cmd flightsql.StatementQuery, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	if len(cmd.GetTransactionId()) > 0 {
		return nil, toStatus(exchange.E(exchange.Invalid, "unsupported_sql", "the exchange has no transactions"))
	}
	svc := q.s.svc
	g, err := svc.OpenAggregate(ctx, callerOf(ctx), aggregateCmd(ctx, cmd.GetQuery()))
	if err != nil {
		return nil, toStatus(err)
	}
	handle, err := svc.AggregateTicket(g)
	if err == nil {
		var tkt []byte
		if tkt, err = flightsql.CreateStatementQueryTicket(handle); err == nil {
			ep := &flight.FlightEndpoint{Ticket: &flight.Ticket{Ticket: tkt}}
			if q.s.location != "" {
				ep.Location = []*flight.Location{{Uri: q.s.location}}
			}
			return &flight.FlightInfo{Schema: flight.SerializeSchema(g.Schema(), q.s.mem), FlightDescriptor: desc,
				Endpoint: []*flight.FlightEndpoint{ep}, TotalRecords: -1, TotalBytes: -1}, nil
		}
	}
	svc.FailAggregate(ctx, g, err)
	return nil, toStatus(err)
}

// GetSchemaStatement returns the schema an aggregate query would answer with; it is
// decided and audited like the query itself, but nothing is run.
func (q *sqlServer) GetSchemaStatement(ctx context.Context, cmd flightsql.StatementQuery, _ *flight.FlightDescriptor) (*flight.SchemaResult, error) {
	g, err := q.s.svc.OpenAggregate(ctx, callerOf(ctx), aggregateCmd(ctx, cmd.GetQuery()))
	if err != nil {
		return nil, toStatus(err)
	}
	q.s.svc.FailAggregate(ctx, g, nil) // closed at once: nothing was run, nothing sent
	return &flight.SchemaResult{Schema: flight.SerializeSchema(g.Schema(), q.s.mem)}, nil
}

// doGetStatement redeems an aggregate ticket and streams its answer; the complete event
// is written once the answer was sent.
func (s *Server) doGetStatement(handle []byte, stream flight.FlightService_DoGetServer) error {
	ctx := stream.Context()
	g, err := s.svc.RedeemAggregate(ctx, callerOf(ctx), handle)
	if err != nil {
		return toStatus(err)
	}
	sink := &flightSink{stream: goneStream{stream}, mem: s.mem}
	_, err = s.svc.RunAggregate(ctx, g, sink)
	if sink.w != nil {
		if cerr := sink.w.Close(); err == nil {
			err = cerr
		}
	}
	return toStatus(err)
}

func (q *sqlServer) catalog(ctx context.Context) ([]service.AggregateTable, error) {
	cmd := aggregateCmd(ctx, "")
	list, err := q.s.svc.AggregateCatalog(ctx, callerOf(ctx), cmd.Purpose, cmd.CaseRef)
	return list, toStatus(err)
}

func (q *sqlServer) infoFor(desc *flight.FlightDescriptor, schema *arrow.Schema) *flight.FlightInfo {
	return &flight.FlightInfo{Endpoint: []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: desc.Cmd}}},
		FlightDescriptor: desc, Schema: flight.SerializeSchema(schema, q.s.mem), TotalRecords: -1, TotalBytes: -1}
}

// one returns a stream of one record built by fill.
func one(mem memory.Allocator, schema *arrow.Schema, fill func(b *array.RecordBuilder)) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	fill(b)
	ch := make(chan flight.StreamChunk, 1)
	ch <- flight.StreamChunk{Data: b.NewRecord()}
	close(ch)
	return schema, ch, nil
}

// GetFlightInfoCatalogs names the catalog listing's ticket.
func (q *sqlServer) GetFlightInfoCatalogs(_ context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return q.infoFor(desc, schema_ref.Catalogs), nil
}

// DoGetCatalogs lists the catalog govx if the caller may aggregate anything in it.
func (q *sqlServer) DoGetCatalogs(ctx context.Context) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	list, err := q.catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	return one(q.s.mem, schema_ref.Catalogs, func(b *array.RecordBuilder) {
		if len(list) > 0 {
			b.Field(0).(*array.StringBuilder).Append(SQLCatalog)
		}
	})
}

// GetFlightInfoSchemas names the db schema listing's ticket.
func (q *sqlServer) GetFlightInfoSchemas(_ context.Context, _ flightsql.GetDBSchemas, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return q.infoFor(desc, schema_ref.DBSchemas), nil
}

// DoGetDBSchemas lists the registers holding datasets the caller may aggregate.
func (q *sqlServer) DoGetDBSchemas(ctx context.Context, cmd flightsql.GetDBSchemas) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	list, err := q.catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	return one(q.s.mem, schema_ref.DBSchemas, func(b *array.RecordBuilder) {
		seen := map[string]bool{}
		for _, t := range list {
			sch, _ := splitDataset(t.Dataset)
			if seen[sch] || !catalogMatches(cmd.GetCatalog()) || !like(cmd.GetDBSchemaFilterPattern(), sch) {
				continue
			}
			seen[sch] = true
			b.Field(0).(*array.StringBuilder).Append(SQLCatalog)
			b.Field(1).(*array.StringBuilder).Append(sch)
		}
	})
}

// GetFlightInfoTables names the table listing's ticket.
func (q *sqlServer) GetFlightInfoTables(_ context.Context, cmd flightsql.GetTables, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	if cmd.GetIncludeSchema() {
		return q.infoFor(desc, schema_ref.TablesWithIncludedSchema), nil
	}
	return q.infoFor(desc, schema_ref.Tables), nil
}

// DoGetTables lists the datasets the caller may aggregate, each with the columns it may
// group by and measure as its schema.
func (q *sqlServer) DoGetTables(ctx context.Context, cmd flightsql.GetTables) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	list, err := q.catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	schema := schema_ref.Tables
	if cmd.GetIncludeSchema() {
		schema = schema_ref.TablesWithIncludedSchema
	}
	types := cmd.GetTableTypes()
	return one(q.s.mem, schema, func(b *array.RecordBuilder) {
		for _, t := range list {
			sch, name := splitDataset(t.Dataset)
			if !catalogMatches(cmd.GetCatalog()) || !like(cmd.GetDBSchemaFilterPattern(), sch) ||
				!like(cmd.GetTableNameFilterPattern(), name) || len(types) > 0 && !containsFold(types, "TABLE") {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append(SQLCatalog)
			b.Field(1).(*array.StringBuilder).Append(sch)
			b.Field(2).(*array.StringBuilder).Append(name)
			b.Field(3).(*array.StringBuilder).Append("TABLE")
			if cmd.GetIncludeSchema() {
				b.Field(4).(*array.BinaryBuilder).Append(flight.SerializeSchema(t.Schema, q.s.mem))
			}
		}
	})
}

// GetFlightInfoTableTypes names the table type listing's ticket.
func (q *sqlServer) GetFlightInfoTableTypes(_ context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return q.infoFor(desc, schema_ref.TableTypes), nil
}

// DoGetTableTypes lists the one table type, TABLE.
func (q *sqlServer) DoGetTableTypes(context.Context) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	return one(q.s.mem, schema_ref.TableTypes, func(b *array.RecordBuilder) {
		b.Field(0).(*array.StringBuilder).Append("TABLE")
	})
}

// splitDataset splits "population.person" into its register and entity.
func splitDataset(id string) (schema, table string) {
	schema, table, _ = strings.Cut(id, ".")
	return schema, table
}

func catalogMatches(c *string) bool { return c == nil || *c == "" || *c == SQLCatalog }

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// like reports whether s matches a Flight SQL filter pattern (SQL LIKE: % any run, _
// any one character); no pattern matches everything.
func like(pattern *string, s string) bool {
	if pattern == nil {
		return true
	}
	p, r := []rune(*pattern), []rune(s)
	// match[i][j]: p[:i] matches r[:j].
	prev := make([]bool, len(r)+1)
	prev[0] = true
	for i := 1; i <= len(p); i++ {
		cur := make([]bool, len(r)+1)
		cur[0] = prev[0] && p[i-1] == '%'
		for j := 1; j <= len(r); j++ {
			switch p[i-1] {
			case '%':
				cur[j] = prev[j] || cur[j-1]
			case '_':
				cur[j] = prev[j-1]
			default:
				cur[j] = prev[j-1] && p[i-1] == r[j-1]
			}
		}
		prev = cur
	}
	return prev[len(r)]
}
