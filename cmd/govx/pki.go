package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"govx/exchange/pki"
)

func init() {
	var caDir string
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Run the department PKI: a CA, server and client certificates, revocation (CRL)",
		Long: `Manage the certificate authority the exchange verifies client certificates against.
The CA lives in a state directory (--ca): its certificate and key, every certificate it
issued by serial, and the latest CRL. Each department system gets its own client
certificate, common name DEPT/SYSTEM — the caller the exchange sees, as with a token.
Revoking writes a new CRL; the exchange reloads its tls.crl within seconds, without a
restart. Rotation: docs/operations.md.`,
		Example: `  govx pki init --ca /etc/govx/pki --name '浙江省政务数据共享 CA'
  govx pki issue server exchange --host exchange.zj.gov.cn --host 10.0.0.5 --ca /etc/govx/pki --out /etc/govx/tls
  govx pki issue client mz-3301/dibao-review --ca /etc/govx/pki --out ./mz-3301
  govx pki revoke 5f1c0d… --reason keyCompromise --ca /etc/govx/pki
  govx pki crl --ca /etc/govx/pki --out /etc/govx/tls/crl.pem`,
	}
	cmd.PersistentFlags().StringVar(&caDir, "ca", envOr("GOVX_PKI_DIR", "pki"), "the CA's state directory (env GOVX_PKI_DIR)")

	var name, org string
	caValid := days(pki.DefaultCAValidity)
	initCmd := &cobra.Command{
		Use:   "init --name NAME",
		Short: "Create the CA in its state directory (refuses one that holds a CA)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.Init(caDir, pki.InitOptions{Name: name, Organization: org, Validity: time.Duration(caValid)})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA %q created in %s, valid until %s\n  certificate (tls.client_ca, and the clients' root): %s\n  key (keep it offline, never copy it to an exchange): %s\n  CRL (tls.crl): %s\n",
				name, caDir, ca.Certificate().NotAfter.Format(time.DateOnly), filepath.Join(caDir, pki.CertFile),
				filepath.Join(caDir, pki.KeyFile), filepath.Join(caDir, pki.CRLFile))
			return nil
		},
	}
	initCmd.Flags().StringVar(&name, "name", "", "the CA's common name")
	initCmd.Flags().StringVar(&org, "org", "", "the CA's organization")
	initCmd.Flags().Var(&caValid, "valid", "validity, e.g. 3650d or 87600h")
	_ = initCmd.MarkFlagRequired("name")

	issue := &cobra.Command{Use: "issue", Short: "Issue a server or client certificate"}
	var hosts []string
	var out string
	certValid := days(pki.DefaultCertValidity)
	server := &cobra.Command{
		Use:     "server NAME --host HOST...",
		Short:   "Issue an exchange's server certificate for its host names and addresses",
		Example: "  govx pki issue server exchange --host exchange.zj.gov.cn --host 127.0.0.1 --out /etc/govx/tls",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.Open(caDir)
			if err != nil {
				return err
			}
			base := filepath.Join(out, args[0])
			if err := refuseExisting(base); err != nil {
				return err
			}
			is, err := ca.IssueServer(args[0], hosts, time.Duration(certValid))
			if err != nil {
				return err
			}
			return writeIssued(cmd, base, is)
		},
	}
	server.Flags().StringSliceVar(&hosts, "host", nil, "a DNS name or IP address clients connect to (repeat, or comma-separated)")
	client := &cobra.Command{
		Use:     "client DEPT/SYSTEM",
		Short:   "Issue the client certificate of one department system",
		Example: "  govx pki issue client mz-3301/dibao-review --out ./mz-3301",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.Open(caDir)
			if err != nil {
				return err
			}
			base := filepath.Join(out, strings.ReplaceAll(args[0], "/", "_"))
			if err := refuseExisting(base); err != nil {
				return err
			}
			is, err := ca.IssueClient(args[0], time.Duration(certValid))
			if err != nil {
				return err
			}
			return writeIssued(cmd, base, is)
		},
	}
	for _, c := range []*cobra.Command{server, client} {
		c.Flags().StringVarP(&out, "out", "o", ".", "directory for NAME.pem (certificate and CA chain) and NAME.key")
		c.Flags().Var(&certValid, "valid", "validity, e.g. 397d")
		issue.AddCommand(c)
	}

	var reason, crlOut string
	crlValid := days(pki.DefaultCRLValidity)
	revoke := &cobra.Command{
		Use:     "revoke SERIAL",
		Short:   "Revoke a certificate by serial and write a new CRL",
		Example: "  govx pki revoke 5f1c0d2a… --reason keyCompromise --out /etc/govx/tls/crl.pem",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.Open(caDir)
			if err != nil {
				return err
			}
			rec, err := ca.Revoke(args[0], reason, time.Duration(crlValid))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (%s %s) at %s, reason %s\n", rec.Serial, rec.Kind, rec.Subject, rec.RevokedAt.Format(time.RFC3339), rec.Reason)
			return publishCRL(cmd, ca, crlOut)
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: keyCompromise, affiliationChanged, superseded, cessationOfOperation, …")
	crl := &cobra.Command{
		Use:   "crl",
		Short: "Sign a fresh CRL (run it well within --valid: a CRL past its next update refuses every client certificate)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.Open(caDir)
			if err != nil {
				return err
			}
			if _, err := ca.WriteCRL(time.Duration(crlValid)); err != nil {
				return err
			}
			return publishCRL(cmd, ca, crlOut)
		},
	}
	for _, c := range []*cobra.Command{revoke, crl} {
		c.Flags().StringVarP(&crlOut, "out", "o", "", "also copy the CRL here (atomically), e.g. the exchange's tls.crl")
		c.Flags().Var(&crlValid, "valid", "the CRL's validity (next update), e.g. 7d")
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the certificates the CA issued (serial, kind, subject, validity, revocation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.Open(caDir)
			if err != nil {
				return err
			}
			recs, err := ca.List()
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "SERIAL", "KIND", "SUBJECT", "NOT AFTER", "REVOKED")
			for _, r := range recs {
				revoked := "-"
				if r.Revoked() {
					revoked = r.RevokedAt.Format(time.RFC3339) + " " + r.Reason
				}
				w.add(r.Serial, r.Kind, r.Subject, r.NotAfter.Format(time.DateOnly), revoked)
			}
			return w.flush()
		},
	}
	cmd.AddCommand(initCmd, issue, revoke, crl, list)
	rootCmd.AddCommand(cmd)
}

// refuseExisting keeps an issue from overwriting a key in use: rotation issues the new
// certificate beside the old one (another --out) and swaps them when it is deployed.
func refuseExisting(base string) error {
	for _, p := range []string{base + ".pem", base + ".key"} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; issue into another --out directory (rotation: docs/operations.md)", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func writeIssued(cmd *cobra.Command, base string, is *pki.Issued) error {
	if err := pki.WriteFile(base+".key", is.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFile(base+".pem", is.CertPEM, 0o644); err != nil {
		return err
	}
	r := is.Record
	fmt.Fprintf(cmd.OutOrStdout(), "issued %s certificate %s, serial %s, valid until %s\n  certificate (with the CA): %s\n  key (stays on that host, mode 0600): %s\n",
		r.Kind, r.Subject, r.Serial, r.NotAfter.Format(time.RFC3339), base+".pem", base+".key")
	return nil
}

func publishCRL(cmd *cobra.Command, ca *pki.CA, out string) error {
	src := filepath.Join(ca.Dir(), pki.CRLFile)
	fmt.Fprintf(cmd.OutOrStdout(), "CRL written: %s\n", src)
	if out == "" {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := pki.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "CRL copied to %s\n", out)
	return nil
}

// days is a validity flag: a Go duration (8760h) or a whole number of days (365d),
// which is how certificate lifetimes are spoken of.
type days time.Duration

func (d *days) String() string {
	v := time.Duration(*d)
	if v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v <= 0 {
			return fmt.Errorf("%q: want a positive number of days, e.g. 365d", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q: want a positive duration, e.g. 365d or 12h", s)
	}
	*d = days(v)
	return nil
}

func (d *days) Type() string { return "duration" }
