package examples

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

const k8sPostgresDir = "kubernetes-postgres"

// The PostgreSQL overlay runs two replicas of the base's pod with
// --state.url instead of a state file, the password from a Secret and
// nowhere else, nothing writable; its flags parse, and kustomize renders it
// without the StatefulSet.
func TestKubernetesPostgres(t *testing.T) {
	var dep struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Replicas *int `yaml:"replicas"`
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata objectMeta `yaml:"metadata"`
				Spec     struct {
					Containers []struct {
						container `yaml:",inline"`
						Env       []struct {
							Name      string `yaml:"name"`
							Value     string `yaml:"value"`
							ValueFrom struct {
								SecretKeyRef struct {
									Name string `yaml:"name"`
									Key  string `yaml:"key"`
								} `yaml:"secretKeyRef"`
							} `yaml:"valueFrom"`
						} `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	readYAML(t, filepath.Join(k8sPostgresDir, "deployment.yaml"), &dep)
	var secret struct {
		Kind     string            `yaml:"kind"`
		Metadata objectMeta        `yaml:"metadata"`
		Data     map[string]string `yaml:"stringData"`
	}
	readYAML(t, filepath.Join(k8sPostgresDir, "secret.yaml"), &secret)

	if dep.Kind != "Deployment" || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("kind %s, replicas %v: want a Deployment of 2", dep.Kind, dep.Spec.Replicas)
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not a label of the pod template", k, v)
		}
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(dep.Spec.Template.Spec.Containers))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	// Kubernetes expands $(NAME) in args from the container's env.
	env := map[string]string{}
	for _, e := range c.Env {
		if ref := e.ValueFrom.SecretKeyRef; ref.Name == secret.Metadata.Name {
			env[e.Name] = secret.Data[ref.Key]
		}
	}
	var args []string
	for _, a := range c.Args {
		args = append(args, os.Expand(strings.NewReplacer("$(", "${", ")", "}").Replace(a), func(k string) string { return env[k] }))
	}
	flags := parseFlags(t, "Deployment args", args)
	u := flags["state.url"]
	if flags["state.file"] != "" || !strings.HasPrefix(u, "postgres://") || strings.Contains(u, "password") ||
		strings.Contains(strings.SplitN(strings.TrimPrefix(u, "postgres://"), "@", 2)[0], ":") {
		t.Errorf("--state.url=%q --state.file=%q: want a postgres:// URL without a password, and no state file", u, flags["state.file"])
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--state.url=$(") {
		t.Errorf("--state.url is not from the Secret: %v", c.Args)
	}
	var fromSecret bool
	for _, e := range c.Env {
		if e.Name == "PGPASSWORD" {
			ref := e.ValueFrom.SecretKeyRef
			fromSecret = e.Value == "" && ref.Name == secret.Metadata.Name && secret.Data[ref.Key] != ""
		}
	}
	if !fromSecret || secret.Kind != "Secret" {
		t.Errorf("PGPASSWORD is not from the Secret %s: %+v", secret.Metadata.Name, c.Env)
	}
	sc := c.SecurityContext
	if !isTrue(sc.ReadOnlyRootFilesystem) || !isFalse(sc.AllowPrivilegeEscalation) || !isTrue(sc.RunAsNonRoot) {
		t.Errorf("security context %+v", sc)
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("volume %s at %s is writable: nothing need be", m.Name, m.MountPath)
		}
	}

	// The base's configuration validates with these flags.
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	decodeObject(t, k8sObjects(t)["ConfigMap"], &cm)
	_, key := path.Split(flags["config.file"])
	config := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(config, []byte(cm.Data[key]), 0o644); err != nil {
		t.Fatal(err)
	}
	acceptsFlags(t, "Deployment args", args, config)

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed: the kustomization is not rendered")
		return
	}
	out, err := exec.Command(kubectl, "kustomize", k8sPostgresDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", k8sPostgresDir, err, out)
	}
	for _, want := range []string{"kind: Deployment", "kind: Service\n", "kind: ConfigMap", "kind: Secret", "kind: ServiceMonitor", "kind: PrometheusRule"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the rendered overlay has no %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(string(out), "kind: StatefulSet") {
		t.Error("the rendered overlay still has the base's StatefulSet")
	}
}
