package examples

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

const k8sDir = "kubernetes"

type objectMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type k8sObject struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	file       string
	node       *yaml.Node
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	RunAsGroup               *int64 `yaml:"runAsGroup"`
	FSGroup                  *int64 `yaml:"fsGroup"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	SecurityContext securityContext `yaml:"securityContext"`
	LivenessProbe   *probe          `yaml:"livenessProbe"`
	ReadinessProbe  *probe          `yaml:"readinessProbe"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		Optional    bool   `yaml:"optional"`
		DefaultMode *int   `yaml:"defaultMode"`
	} `yaml:"secret"`
}

type statefulSet struct {
	Spec struct {
		ServiceName string `yaml:"serviceName"`
		Replicas    *int   `yaml:"replicas"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				SecurityContext              securityContext `yaml:"securityContext"`
				AutomountServiceAccountToken *bool           `yaml:"automountServiceAccountToken"`
				Containers                   []container     `yaml:"containers"`
				Volumes                      []volume        `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				AccessModes []string `yaml:"accessModes"`
				Resources   struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type service struct {
	Spec struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port        string `yaml:"port"`
			Path        string `yaml:"path"`
			Relabelings []struct {
				Action      string `yaml:"action"`
				TargetLabel string `yaml:"targetLabel"`
				Replacement string `yaml:"replacement"`
			} `yaml:"relabelings"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// k8sObjects reads every manifest of kubernetes/ and checks that each is a
// Kubernetes object, listed once in kustomization.yaml.
func k8sObjects(t *testing.T) map[string]k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kustomization struct {
		Resources []string `yaml:"resources"`
	}
	readYAML(t, filepath.Join(k8sDir, "kustomization.yaml"), &kustomization)
	objects := map[string]k8sObject{}
	var manifests []string
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		manifests = append(manifests, filepath.Base(f))
		for _, doc := range yamlDocuments(t, f) {
			var o k8sObject
			if err := doc.Decode(&o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: not a Kubernetes object (apiVersion %q, kind %q, name %q)", f, o.APIVersion, o.Kind, o.Metadata.Name)
			}
			if _, dup := objects[o.Kind]; dup {
				t.Fatalf("%s: a second %s: the test expects one of each kind", f, o.Kind)
			}
			o.file, o.node = f, doc
			objects[o.Kind] = o
		}
	}
	slices.Sort(manifests)
	resources := slices.Clone(kustomization.Resources)
	slices.Sort(resources)
	if !slices.Equal(manifests, resources) {
		t.Errorf("kustomization.yaml lists %v; the manifests are %v", kustomization.Resources, manifests)
	}
	for _, kind := range []string{"ConfigMap", "StatefulSet", "Service", "ServiceMonitor", "PrometheusRule"} {
		if _, ok := objects[kind]; !ok {
			t.Fatalf("%s/: no %s", k8sDir, kind)
		}
	}
	return objects
}

func decodeObject(t *testing.T, o k8sObject, v any) {
	t.Helper()
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%s: %v", o.file, err)
	}
}

func isTrue(b *bool) bool       { return b != nil && *b }
func isFalse(b *bool) bool      { return b != nil && !*b }
func is(p *int64, v int64) bool { return p != nil && *p == v }

// The StatefulSet runs the image as the Dockerfile builds it, with the
// flags the binary has, its state on a claimed volume, and nothing else
// writable.
func TestKubernetesStatefulSet(t *testing.T) {
	objects := k8sObjects(t)
	df := readDockerfile(t)
	var sts statefulSet
	decodeObject(t, objects["StatefulSet"], &sts)
	spec := sts.Spec
	if spec.Replicas == nil || *spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1 (the state volume is ReadWriteOnce)", spec.Replicas)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not a label of the pod template", k, v)
		}
	}
	if spec.ServiceName != objects["Service"].Metadata.Name {
		t.Errorf("serviceName %q, the Service is %q", spec.ServiceName, objects["Service"].Metadata.Name)
	}
	if len(spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Template.Spec.Containers))
	}
	c := spec.Template.Spec.Containers[0]
	if len(c.Command) != 0 {
		t.Errorf("command %v overrides the image's entrypoint %v", c.Command, df.Entrypoint)
	}
	flags := parseFlags(t, "StatefulSet args", c.Args)
	mounts := map[string]string{} // mount path → volume
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
		if m.MountPath != df.Volume && !m.ReadOnly {
			t.Errorf("volume %s at %s is writable: only the state volume may be", m.Name, m.MountPath)
		}
	}

	// The state: the Dockerfile's VOLUME, on a claim.
	stateDir := path.Dir(flags["state.file"])
	if stateDir != df.Volume {
		t.Errorf("--state.file=%s is not in the Dockerfile's VOLUME %s", flags["state.file"], df.Volume)
	}
	var claimed bool
	for _, pvc := range spec.VolumeClaimTemplates {
		if pvc.Metadata.Name == mounts[stateDir] {
			claimed = true
			if !slices.Equal(pvc.Spec.AccessModes, []string{"ReadWriteOnce"}) || pvc.Spec.Resources.Requests["storage"] == "" {
				t.Errorf("claim %s: access modes %v, storage %q", pvc.Metadata.Name, pvc.Spec.AccessModes, pvc.Spec.Resources.Requests["storage"])
			}
		}
	}
	if !claimed {
		t.Errorf("%s (volume %q) is not from a volumeClaimTemplate", stateDir, mounts[stateDir])
	}

	// The configuration: the ConfigMap's key, mounted read-only.
	volumes := map[string]volume{}
	for _, v := range spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	configDir, configKey := path.Split(flags["config.file"])
	cv := volumes[mounts[path.Clean(configDir)]]
	if cv.ConfigMap == nil || cv.ConfigMap.Name != objects["ConfigMap"].Metadata.Name {
		t.Errorf("--config.file=%s is not on the ConfigMap %s", flags["config.file"], objects["ConfigMap"].Metadata.Name)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	decodeObject(t, objects["ConfigMap"], &cm)
	if cm.Data[configKey] == "" {
		t.Errorf("the ConfigMap has no key %s (--config.file=%s)", configKey, flags["config.file"])
	}

	// The Cert Spotter token: a Secret mounted as a file, where the
	// ConfigMap's token_file points.
	var secretMount string
	for p, name := range mounts {
		if s := volumes[name].Secret; s != nil {
			secretMount = p
			// 0440 in YAML 1.1, as Kubernetes reads it: owner and fsGroup.
			if !s.Optional || s.DefaultMode == nil || *s.DefaultMode != 0o440 {
				t.Errorf("secret volume %s: optional %v, mode %v: want optional (only certspotter needs it) and 0440 (the user and fsGroup read it, nobody else)", name, s.Optional, s.DefaultMode)
			}
			if !strings.Contains(cm.Data[configKey], s.SecretName) {
				t.Errorf("the ConfigMap does not say how to create the Secret %s", s.SecretName)
			}
		}
	}
	if secretMount == "" || !strings.Contains(cm.Data[configKey], "token_file: "+secretMount+"/") {
		t.Errorf("no token_file under the secret's mount %q in the ConfigMap's configuration", secretMount)
	}

	// The port.
	if len(c.Ports) != 1 || strings.TrimSuffix(df.Expose, "/tcp") != strconv.Itoa(c.Ports[0].ContainerPort) {
		t.Errorf("container ports %+v, the Dockerfile exposes %s", c.Ports, df.Expose)
	} else if la, ok := flags["web.listen-address"]; ok && la != ":"+df.Expose {
		t.Errorf("--web.listen-address=%s, the container port is %s", la, df.Expose)
	}

	// Non-root, read-only, no privileges, the runtime's seccomp profile.
	sc := c.SecurityContext
	wantUID := uid(df.User)
	if !isTrue(sc.RunAsNonRoot) || sc.RunAsUser == nil || strconv.Itoa(int(*sc.RunAsUser)) != wantUID || !is(sc.RunAsGroup, 65534) {
		t.Errorf("container runs as non-root %v, user %v, group %v: want true, %s (the Dockerfile's USER), 65534", sc.RunAsNonRoot, sc.RunAsUser, sc.RunAsGroup, wantUID)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if isTrue(sc.Privileged) {
		t.Error("privileged")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities drop %v add %v, want drop [ALL]", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	if sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("container seccompProfile %q, want RuntimeDefault", sc.SeccompProfile.Type)
	}
	psc := spec.Template.Spec.SecurityContext
	if !isTrue(psc.RunAsNonRoot) || !is(psc.RunAsUser, 65534) || !is(psc.FSGroup, 65534) || psc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, runAsUser 65534, fsGroup 65534 (the state volume writable), seccomp RuntimeDefault", psc)
	}
	if !isFalse(spec.Template.Spec.AutomountServiceAccountToken) {
		t.Error("the pod mounts a service account token it never uses")
	}

	// Probes on the exporter's endpoints, through the named port.
	for what, p := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := map[string]string{"liveness": "/-/healthy", "readiness": "/-/ready"}[what]
		if p == nil || p.HTTPGet.Path != want || p.HTTPGet.Port != c.Ports[0].Name {
			t.Errorf("%s probe %+v, want GET %s on port %s", what, p, want, c.Ports[0].Name)
		}
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
}

// The configuration the ConfigMap ships validates, and the real binary
// accepts every flag and value of the StatefulSet's args.
func TestKubernetesConfigAndArgs(t *testing.T) {
	objects := k8sObjects(t)
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	decodeObject(t, objects["ConfigMap"], &cm)
	var sts statefulSet
	decodeObject(t, objects["StatefulSet"], &sts)
	args := sts.Spec.Template.Spec.Containers[0].Args
	_, key := path.Split(parseFlags(t, "StatefulSet args", args)["config.file"])
	config := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(config, []byte(cm.Data[key]), 0o644); err != nil {
		t.Fatal(err)
	}
	acceptsFlags(t, "StatefulSet args", args, config)
}

// Prometheus finds the pods through the Service, and their series get the
// job the shipped rules select.
func TestKubernetesServiceAndMonitor(t *testing.T) {
	objects := k8sObjects(t)
	var sts statefulSet
	decodeObject(t, objects["StatefulSet"], &sts)
	podLabels := sts.Spec.Template.Metadata.Labels
	port := sts.Spec.Template.Spec.Containers[0].Ports[0]

	var svc service
	decodeObject(t, objects["Service"], &svc)
	if len(svc.Spec.Selector) == 0 {
		t.Fatal("the Service selects nothing")
	}
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("the Service selects %s=%s, not a label of the pods", k, v)
		}
	}
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("clusterIP %q: the StatefulSet's governing Service is headless", svc.Spec.ClusterIP)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port.ContainerPort ||
		(svc.Spec.Ports[0].TargetPort != port.Name && svc.Spec.Ports[0].TargetPort != port.ContainerPort) {
		t.Errorf("Service ports %+v do not reach the container's %+v", svc.Spec.Ports, port)
	}

	var sm serviceMonitor
	decodeObject(t, objects["ServiceMonitor"], &sm)
	svcLabels := objects["Service"].Metadata.Labels
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svcLabels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, not a label of the Service", k, v)
		}
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("ServiceMonitor endpoints %+v: want /metrics on the Service's port %q", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
	job := ""
	for _, r := range sm.Spec.Endpoints[0].Relabelings {
		if r.TargetLabel == "job" && (r.Action == "" || r.Action == "replace") {
			job = r.Replacement
		}
	}
	// The rules' selector is set in the mixin's _config; the operator would
	// name the job after the Service, which the rules would not select.
	rules, err := os.ReadFile(filepath.Join(k8sDir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if job == "" || !strings.Contains(string(rules), `job=\"`+job+`\"`) {
		t.Errorf("the ServiceMonitor sets job %q, which the PrometheusRule's rules do not select", job)
	}
}

// The PrometheusRule is generated from alerts/: its groups are the shipped
// rules, it is what its jsonnet renders today, and promtool accepts it.
func TestKubernetesPrometheusRule(t *testing.T) {
	objects := k8sObjects(t)
	pr := objects["PrometheusRule"]
	if pr.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("PrometheusRule apiVersion %q", pr.APIVersion)
	}
	var spec struct {
		Spec struct {
			Groups []any `yaml:"groups"`
		} `yaml:"spec"`
	}
	decodeObject(t, pr, &spec)
	if !reflect.DeepEqual(testenv.Normalized(t, spec.Spec.Groups), shippedRuleGroups(t)) {
		t.Errorf("%s's groups differ from %s: render it with jsonnet -S examples/kubernetes/prometheusrule.jsonnet > examples/kubernetes/prometheusrule.yaml", pr.file, rulesFile)
	}

	t.Run("rendered", func(t *testing.T) {
		jsonnet := testenv.Require(t, "jsonnet", "jsonnet")
		want, err := os.ReadFile(pr.file)
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, jsonnet, "-S", filepath.Join(k8sDir, "prometheusrule.jsonnet")); got != string(want) {
			t.Errorf("%s is not what prometheusrule.jsonnet renders: run jsonnet -S examples/kubernetes/prometheusrule.jsonnet > examples/kubernetes/prometheusrule.yaml", pr.file)
		}
	})
	t.Run("promtool", func(t *testing.T) {
		promtool := testenv.Require(t, "promtool", "prometheus")
		out, err := yaml.Marshal(map[string]any{"groups": spec.Spec.Groups})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "prometheusrule.rules.yml")
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
		if res, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
			t.Fatalf("promtool check rules on the PrometheusRule's spec: %v\n%s", err, res)
		}
	})
}
