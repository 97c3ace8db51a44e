package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"govx/exchange/server"
)

func init() {
	var cfgPath string
	var check bool
	var instance, advertise string
	cmd := &cobra.Command{
		Use:   "exchange",
		Short: "Run the exchange",
	}
	serve := &cobra.Command{
		Use:   "serve -c FILE",
		Short: "Serve the registers over Arrow Flight and HTTP, every request decided and audited",
		Long: `Run the exchange: materialize the govx.<dataset> Kafka topics, serve Arrow Flight and
HTTP on loopback (unless the config names other addresses), decide every request with the
sharing policies and write every access to the audit log. See deploy/exchange.example.yaml
for every setting. --check loads and checks everything serve loads at start (the TLS
certificate and key, the client CAs, the CRL, the datasets) and exits; it writes nothing.`,
		Example: "  govx exchange serve -c deploy/exchange.example.yaml\n  govx exchange serve -c exchange.yaml --check",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.LoadConfig(cfgPath)
			if err != nil {
				return err
			}
			if instance != "" {
				// Replicas share one config file (a ConfigMap) but each audits in a
				// chain of its own: the pod's name, given on the command line.
				cfg.Audit.Instance = instance
			}
			if advertise != "" {
				// Likewise each replica's own address (a StatefulSet pod's DNS name).
				cfg.FlightAdvertise = advertise
				if err := cfg.Check(); err != nil {
					return fmt.Errorf("--flight-advertise: %w", err)
				}
			}
			if check {
				// The same loading serve does at start: certificate and key, client
				// CAs, the CRL against them, dataset names.
				if err := server.Validate(cfg); err != nil {
					return fmt.Errorf("%s: %w", cfgPath, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", cfgPath)
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			x, err := server.Start(ctx, cfg, server.WithLogger(log))
			if err != nil {
				return err
			}
			ready := x.Ready()
			for {
				select {
				case <-ctx.Done():
					log.Info("stopping")
					return x.Close()
				case <-x.Done():
					// A part stopped: exit non-zero so that systemd or Kubernetes
					// restarts the exchange, which resumes from its snapshot and Kafka.
					err := x.Err()
					log.Error("a part of the exchange stopped; exiting", "err", err)
					return errors.Join(err, x.Close())
				case <-ready:
					log.Info("exchange ready")
					ready = nil
				}
			}
		},
	}
	serve.Flags().StringVarP(&cfgPath, "config", "c", "", "the exchange's config file (YAML)")
	serve.Flags().BoolVar(&check, "check", false, "validate the config and exit")
	serve.Flags().StringVar(&instance, "instance", "", "the audit chain's instance id, instead of audit.instance (one per replica)")
	serve.Flags().StringVar(&advertise, "flight-advertise", "", "this replica's Flight host:port named in FlightInfo endpoints, instead of flight_advertise (one per replica)")
	serve.MarkFlagRequired("config")
	cmd.AddCommand(serve)
	rootCmd.AddCommand(cmd)
}
