package flight

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/client"
	"govx/exchange/service"
	"govx/exchange/service/servicetest"
)

// replica starts one exchange replica named instance over its own copy of the
// persons (replicas materialize the same topics), sharing the signing secret and, via
// tokens, the credentials of first, as replicas behind a load balancer do.
func replica(t *testing.T, instance string, first *servicetest.Fixture, advertise func(self string) string) (*servicetest.Fixture, string) {
	t.Helper()
	f := servicetest.New(t, servicetest.Config{Options: []service.Option{service.WithInstance(instance)}})
	tokens := f.Tokens
	if first != nil {
		tokens = first.Tokens
	}
	lis := servicetest.Listen(t, "127.0.0.1:0")
	addr := lis.Addr().String()
	srv := New(f.Svc, tokens, nil, f.Mem, WithAdvertise(advertise(addr), false))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return f, addr
}

// forward is a load balancer in front of to: every connection it accepts goes there.
// accepted counts them.
func forward(t *testing.T, to string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// TestReplicaTickets: a ticket names the replica that issued it in its endpoint's
// location and is redeemed only there, so single use holds across replicas; the other
// replica refuses it clearly and audits the refusal; cursors work at either replica.
func TestReplicaTickets(t *testing.T) {
	self := func(addr string) string { return addr }
	a, addrA := replica(t, "exchange-a", nil, self)
	b, addrB := replica(t, "exchange-b", a, self)
	hz := a.Token(t, "mz-3301/dibao-review")
	cmd := exchange.PullCmd{Dataset: "population.person", Purpose: dibao}
	ca, cb := raw(t, addrA), raw(t, addrB)

	info, err := ca.GetFlightInfo(as(hz), cmdDesc(cmd))
	if err != nil {
		t.Fatal(err)
	}
	ep := info.Endpoint[0]
	if len(ep.Location) != 1 || ep.Location[0].Uri != "grpc+tcp://"+addrA {
		t.Fatalf("endpoint locations %v, want the issuing replica grpc+tcp://%s", ep.Location, addrA)
	}
	err = redeem(cb, hz, ep.Ticket)
	checkStatus(t, servicetest.DocumentedErrors(t), err, "ticket_elsewhere")
	b.Event(t, "replica b's audited refusal", func(ev *audit.Event) bool {
		return ev.Error == "ticket_elsewhere" && ev.Department == "mz-3301" && ev.Decision == "deny"
	})
	// Refused elsewhere, the ticket is still unused where it was issued: once.
	stream, err := ca.DoGet(as(hz), ep.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	schema, rows, err := drain(stream)
	if err != nil || rows != 20 {
		t.Fatalf("redeeming at the issuing replica: %d rows, %v; want Hangzhou's 20", rows, err)
	}
	if err := redeem(ca, hz, ep.Ticket); err == nil {
		t.Fatal("a ticket was redeemed twice at its replica")
	}
	if err := redeem(cb, hz, ep.Ticket); err == nil {
		t.Fatal("a redeemed ticket was honoured by the other replica")
	}

	// The cursor replica a returned continues at replica b.
	cursor, ok := schema.Metadata().GetValue(exchange.MetaCursor)
	if !ok {
		t.Fatal("no cursor in the pull's schema")
	}
	b.Apply(t, b.Table, map[string]any{"id_number": a.IDs["3301"][0], "name": "李四", "gender": "1", "birth_date": "1940-01-01",
		"household_region": "330106", "status": "alive", "updated_at": "2026-11-02T00:00:00Z"})
	_, n, err := pull(cb, hz, exchange.PullCmd{Dataset: "population.person", Purpose: dibao, Since: cursor})
	if err != nil || n != 1 {
		t.Fatalf("changes pull at replica b with replica a's cursor: %d rows, %v; want the 1 change", n, err)
	}
}

// TestClientFollowsLocation: the Go client redeems a ticket at the location its
// endpoint names, not where it asked for the decision.
func TestClientFollowsLocation(t *testing.T) {
	// The replica advertises a route of its own (a front that reaches only it); the
	// client is configured with the replica's direct address.
	var front string
	var accepted *atomic.Int64
	f, addr := replica(t, "exchange-a", nil, func(self string) string {
		front, accepted = forward(t, self)
		return front
	})
	c, err := client.New(client.Config{Flight: addr, Token: f.Token(t, "mz-3301/dibao-review")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rows int64
	res, err := c.Pull(context.Background(), exchange.PullCmd{Dataset: "population.person", Purpose: dibao}, nil,
		func(rec arrow.Record) error { rows += rec.NumRows(); return nil })
	if err != nil || rows != 20 || res.Cursor == "" {
		t.Fatalf("pull: %d rows, cursor %q, %v; want 20 rows and a cursor", rows, res.Cursor, err)
	}
	if accepted.Load() == 0 {
		t.Fatalf("the client redeemed the ticket at %s, not at the endpoint's location %s", addr, front)
	}
}

// mint returns a ticket for token's subject issued by another service sharing the
// secret: a replica named instance, or with instance "" (as f's), f's service after a
// restart.
func mint(t *testing.T, instance, token string, f *servicetest.Fixture) *flight.Ticket {
	t.Helper()
	other := servicetest.New(t, servicetest.Config{Options: []service.Option{service.WithInstance(instance)}})
	subj, err := f.Tokens.Authenticate(token)
	if err != nil {
		t.Fatal(err)
	}
	tkt, err := other.Svc.Ticket(&service.Grant{RequestID: "req-minted", Subject: subj, Action: exchange.ActionRead,
		Dataset: "population.person", Purpose: dibao})
	if err != nil {
		t.Fatal(err)
	}
	return &flight.Ticket{Ticket: tkt}
}
