package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"govx/exchange/client"
)

// consumerFlags are the connection flags of the consumer commands (catalog, pull,
// lookup, verify). The token comes from --token, $GOVX_TOKEN or a profile file; it is
// never printed.
type consumerFlags struct {
	profile, token, flight, http string
}

func (f *consumerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.profile, "profile", os.Getenv("GOVX_PROFILE"), "profile file with flight, http and token (govx demo writes one per department system; env GOVX_PROFILE)")
	fl.StringVar(&f.token, "token", "", "bearer token of your department system (default $GOVX_TOKEN)")
	fl.StringVar(&f.flight, "flight", "", "exchange Flight address host:port (default 127.0.0.1:8815, env GOVX_FLIGHT)")
	fl.StringVar(&f.http, "http", "", "exchange HTTP base URL (default http://127.0.0.1:8080, env GOVX_HTTP)")
}

func (f *consumerFlags) client() (*client.Client, error) {
	var cfg client.Config
	if f.profile != "" {
		p, err := client.LoadProfile(f.profile)
		if err != nil {
			return nil, err
		}
		cfg = p
	}
	pick := func(dst *string, flag, env string) {
		if flag != "" {
			*dst = flag
		} else if v := os.Getenv(env); v != "" && *dst == "" {
			*dst = v
		}
	}
	pick(&cfg.Token, f.token, "GOVX_TOKEN")
	pick(&cfg.Flight, f.flight, "GOVX_FLIGHT")
	pick(&cfg.HTTP, f.http, "GOVX_HTTP")
	c, err := client.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	return c, nil
}
