package kubernetes

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// decodeStrict decodes one Kubernetes object, refusing any field the API type lacks
// (a misspelt or misplaced key), as the API server would with field validation.
func decodeStrict(t *testing.T, what string, data []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// newObject returns the API type for kind, or nil for a kind govx does not ship.
func newObject(kind string) any {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "Service":
		return &corev1.Service{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

// TestDeployManifestsDecodeStrictly: every YAML document under deploy/kubernetes is a
// Kustomization, an exchange config, or a Kubernetes object (or a patch of one) that
// decodes strictly into its API type.
func TestDeployManifestsDecodeStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch filepath.Base(p) {
		case "kustomization.yaml":
			var k kusttypes.Kustomization
			decodeStrict(t, p, data, &k)
			n++
			return nil
		case "exchange.yaml":
			return nil // an exchange config: cmd/govx's TestDeployConfigsCheck runs --check on it
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", p, i+1, err)
			}
			obj := newObject(meta.Kind)
			if obj == nil {
				t.Fatalf("%s document %d: kind %q is not one this test knows; add it to newObject", p, i+1, meta.Kind)
			}
			decodeStrict(t, p, []byte(doc), obj)
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("decoded only %d documents", n)
	}
}

// build renders an overlay as `kubectl apply -k` would, from an in-memory copy of this
// tree. The overlay's secrets/ files are per installation and not in git: stand-ins
// take their place (their bytes do not matter to Kubernetes).
func build(t *testing.T, overlay string) resmap.ResMap {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/k", filepath.ToSlash(p)), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server.pem", "server.key", "ca.pem", "crl.pem", "exchange.secret", "audit.key", "tokens.json", "clickhouse.password"} {
		if err := mem.WriteFile(path.Join("/k", overlay, "secrets", f), []byte("stand-in for "+f)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, path.Join("/k", overlay))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	return res
}

// rendered is an overlay's output, each object decoded strictly into its API type.
type rendered struct {
	sts        *appsv1.StatefulSet
	services   map[string]*corev1.Service
	configMaps map[string]*corev1.ConfigMap // by name as rendered (with hash suffixes)
	secrets    map[string]*corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	netpol     *networkingv1.NetworkPolicy
	namespaces map[string]bool
}

func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	r := &rendered{services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, namespaces: map[string]bool{}}
	for _, res := range build(t, overlay).Resources() {
		data, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj := newObject(res.GetKind())
		if obj == nil {
			t.Fatalf("%s renders a %s, which this test does not know", overlay, res.GetKind())
		}
		what := overlay + ": " + res.GetKind() + " " + res.GetName()
		decodeStrict(t, what, data, obj)
		r.namespaces[res.GetNamespace()] = true
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			r.sts = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdb = o
		case *networkingv1.NetworkPolicy:
			r.netpol = o
		}
	}
	if r.sts == nil || r.pdb == nil || r.netpol == nil || len(r.services) != 2 {
		t.Fatalf("%s renders an incomplete set: %+v", overlay, r)
	}
	return r
}

// exchangeConfig is the part of the exchange's config the manifests must agree with.
type exchangeConfig struct {
	FlightAddr string `json:"flight_addr"`
	HTTPAddr   string `json:"http_addr"`
	Ops        struct {
		Listen string `json:"listen"`
	} `json:"ops"`
	DataDir    string `json:"data_dir"`
	TokensFile string `json:"tokens_file"`
	SecretFile string `json:"secret_file"`
	Audit      struct {
		SpoolDir   string `json:"spool_dir"`
		SigningKey string `json:"signing_key"`
		Checkpoint string `json:"checkpoints"`
		ClickHouse struct {
			PasswordEnv string `json:"password_env"`
		} `json:"clickhouse"`
	} `json:"audit"`
	TLS struct {
		Cert     string `json:"cert"`
		Key      string `json:"key"`
		ClientCA string `json:"client_ca"`
		CRL      string `json:"crl"`
	} `json:"tls"`
}

func TestDeployProvinceOverlay(t *testing.T) {
	r := render(t, "overlays/province")
	if len(r.namespaces) != 1 || !r.namespaces["govx"] {
		t.Errorf("objects in namespaces %v, want all in govx", r.namespaces)
	}
	sts := r.sts
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
	}
	pod := sts.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.Image != "registry.zj.gov.cn/govx/govx:1.0.0" {
		t.Errorf("image %q", c.Image)
	}

	// The config the pods read, from the generated ConfigMap the volume names.
	var cfgMap *corev1.ConfigMap
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	if v := volumes["config"]; v.ConfigMap != nil {
		cfgMap = r.configMaps[v.ConfigMap.Name]
	}
	if cfgMap == nil || !strings.HasPrefix(cfgMap.Name, "govx-exchange-config-") {
		t.Fatalf("config volume %+v does not name the generated ConfigMap", volumes["config"])
	}
	var cfg exchangeConfig
	if err := yaml.Unmarshal([]byte(cfgMap.Data["exchange.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Args, "/etc/govx/config/exchange.yaml") || !slices.Contains(c.Args, "--instance=$(POD_NAME)") {
		t.Errorf("args %v: want the mounted config and the pod name as the audit instance", c.Args)
	}

	// Probes: readiness on /readyz, liveness on /healthz, both on the ops port the
	// config listens on — never on the API.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, tt := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if tt.probe == nil || tt.probe.HTTPGet == nil || tt.probe.HTTPGet.Path != tt.path || tt.probe.HTTPGet.Port.StrVal != "ops" {
			t.Errorf("%s probe %+v, want GET %s on port ops", tt.name, tt.probe, tt.path)
		}
	}
	if !strings.HasSuffix(cfg.Ops.Listen, ":9090") || ports["ops"] != 9090 || !strings.HasSuffix(cfg.FlightAddr, ":8815") ||
		ports["flight"] != 8815 || !strings.HasSuffix(cfg.HTTPAddr, ":8080") || ports["http"] != 8080 {
		t.Errorf("container ports %v against config flight %s http %s ops %s", ports, cfg.FlightAddr, cfg.HTTPAddr, cfg.Ops.Listen)
	}

	// Every file the config names is where a volume puts it, and secret files exist
	// as keys of the mounted Secret.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for key, p := range map[string]string{"tls.cert": cfg.TLS.Cert, "tls.key": cfg.TLS.Key, "tls.client_ca": cfg.TLS.ClientCA,
		"tls.crl": cfg.TLS.CRL, "secret_file": cfg.SecretFile, "audit.signing_key": cfg.Audit.SigningKey, "tokens_file": cfg.TokensFile} {
		m, ok := mounts[path.Dir(p)]
		if !ok || !m.ReadOnly {
			t.Errorf("%s %s: no read-only volume mounted at %s", key, p, path.Dir(p))
			continue
		}
		v := volumes[m.Name]
		switch {
		case v.Secret != nil:
			s := r.secrets[v.Secret.SecretName]
			if s == nil {
				t.Errorf("%s: volume %s names Secret %s, which the overlay does not generate", key, m.Name, v.Secret.SecretName)
			} else if _, ok := s.Data[path.Base(p)]; !ok {
				t.Errorf("%s: Secret %s has no key %s", key, s.Name, path.Base(p))
			}
		case v.ConfigMap != nil:
			cm := r.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Errorf("%s: volume %s names ConfigMap %s, which the overlay does not generate", key, m.Name, v.ConfigMap.Name)
			} else if _, ok := cm.Data[path.Base(p)]; !ok {
				t.Errorf("%s: ConfigMap %s has no key %s", key, cm.Name, path.Base(p))
			}
		default:
			t.Errorf("%s: volume %s is neither a Secret nor a ConfigMap", key, m.Name)
		}
	}
	// The CRL keeps its name, so that a new one is updated in place in running pods.
	if v := volumes["crl"]; v.ConfigMap == nil || v.ConfigMap.Name != "govx-exchange-crl" {
		t.Errorf("crl volume %+v: want the ConfigMap govx-exchange-crl without a hash suffix", v)
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("mount %s uses subPath: its updates would never reach the pod", m.MountPath)
		}
	}
	// State lives on the replica's own volume.
	for key, p := range map[string]string{"data_dir": cfg.DataDir, "audit.spool_dir": cfg.Audit.SpoolDir, "audit.checkpoints": cfg.Audit.Checkpoint} {
		if !strings.HasPrefix(p, "/var/lib/govx/") || mounts["/var/lib/govx"].Name != "data" {
			t.Errorf("%s %s is not on the replica's data volume", key, p)
		}
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("volume claim templates %+v", sts.Spec.VolumeClaimTemplates)
	}
	envOK := false
	for _, e := range c.Env {
		if e.Name == cfg.Audit.ClickHouse.PasswordEnv && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			s := r.secrets[e.ValueFrom.SecretKeyRef.Name]
			envOK = s != nil && s.Data[e.ValueFrom.SecretKeyRef.Key] != nil
		}
	}
	if !envOK {
		t.Errorf("%s does not come from a generated Secret", cfg.Audit.ClickHouse.PasswordEnv)
	}

	// Locked down: not root, no privilege escalation, read-only root, no capabilities.
	sc := c.SecurityContext
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("security context pod %+v container %+v", psc, sc)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Error("the pods mount a service account token they never use")
	}

	// The PDB keeps two of three replicas through a drain and selects the pods.
	if r.pdb.Spec.MinAvailable == nil || r.pdb.Spec.MinAvailable.IntValue() != 2 {
		t.Errorf("PDB minAvailable %v, want 2", r.pdb.Spec.MinAvailable)
	}
	if !selects(r.pdb.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("PDB selector %v does not select the pods %v", r.pdb.Spec.Selector.MatchLabels, pod.Labels)
	}

	// Services: the API's selects the pods and does not expose the ops port.
	api := r.services["govx-exchange"]
	if api == nil || !selects(api.Spec.Selector, pod.Labels) {
		t.Fatalf("API service %+v does not select the pods", api)
	}
	for _, p := range api.Spec.Ports {
		if p.TargetPort.StrVal == "ops" || p.Port == 9090 {
			t.Errorf("the API service exposes the operations port: %+v", p)
		}
	}
	if r.services[sts.Spec.ServiceName] == nil {
		t.Errorf("the StatefulSet's service %q is not rendered", sts.Spec.ServiceName)
	}

	// The NetworkPolicy selects the pods, restricts both directions, lets nothing in
	// from everywhere, and keeps the ops port for monitoring only.
	np := r.netpol
	if !selects(np.Spec.PodSelector.MatchLabels, pod.Labels) {
		t.Errorf("NetworkPolicy selects %v, not the pods %v", np.Spec.PodSelector.MatchLabels, pod.Labels)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policy types %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	for i, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d admits every source or every port: %+v", i, rule)
		}
		opsRule := false
		for _, p := range rule.Ports {
			opsRule = opsRule || p.Port.IntValue() == 9090
		}
		for _, from := range rule.From {
			if from.IPBlock != nil && (from.IPBlock.CIDR == "0.0.0.0/0" || from.IPBlock.CIDR == "::/0") {
				t.Errorf("ingress rule %d admits the whole internet", i)
			}
			if opsRule && (from.NamespaceSelector == nil || from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring") {
				t.Errorf("the operations port is reachable from %+v, not only from monitoring", from)
			}
		}
	}
	if len(np.Spec.Egress) == 0 {
		t.Error("no egress rules: with policy type Egress the exchange could not reach Kafka")
	}
}

func TestDeployBaseBuilds(t *testing.T) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "base")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj := newObject(r.GetKind())
		if obj == nil {
			t.Fatalf("base renders a %s", r.GetKind())
		}
		decodeStrict(t, "base: "+r.GetKind()+" "+r.GetName(), data, obj)
		if pdb, ok := obj.(*policyv1.PodDisruptionBudget); ok && (pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1) {
			t.Errorf("base PDB minAvailable %v, want 1 of its 2 replicas", pdb.Spec.MinAvailable)
		}
	}
}

// selects reports whether a label selector's matchLabels select labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
