package config

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// No Docker engine runs here, so docker-compose.yml is checked by reading it: every service it
// names exists, every HUDDLE_ variable is one Load reads (with values Load accepts), and the
// Dockerfile it builds from exists.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]any    `yaml:"depends_on"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

const repoRoot = "../.."

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// interpolate resolves compose's ${VAR:-default} with the default, as with an empty environment.
var interpolation = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(:?-([^}]*))?\}`)

func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		return interpolation.FindStringSubmatch(m)[2]
	})
}

func huddleServices(f composeFile) []string {
	var names []string
	for name, s := range f.Services {
		if s.Build != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func TestCompose_Topology(t *testing.T) {
	f := loadCompose(t)
	if img := f.Services["postgres"].Image; !strings.HasPrefix(img, "postgres:15") {
		t.Errorf("postgres service image %q, want postgres:15", img)
	}
	var nats []string
	for name, s := range f.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			nats = append(nats, name)
		}
	}
	if len(nats) != 3 {
		t.Fatalf("want a three-node NATS cluster, found %v", nats)
	}
	names := map[string]bool{}
	for _, name := range nats {
		cmd := strings.Join(f.Services[name].Command, " ")
		for _, want := range []string{"--jetstream", "--cluster_name", "--routes"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command lacks %s", name, want)
			}
		}
		for _, other := range nats {
			if !strings.Contains(cmd, "nats://"+other+":6222") {
				t.Errorf("%s: routes do not reach %s", name, other)
			}
		}
		i := slices.Index(f.Services[name].Command, "--server_name")
		if i < 0 || i+1 >= len(f.Services[name].Command) {
			t.Errorf("%s: JetStream clustering needs a --server_name", name)
			continue
		}
		sn := f.Services[name].Command[i+1]
		if names[sn] || strings.Contains(sn, "$") {
			t.Errorf("%s: server name %q must be literal and unique", name, sn)
		}
		names[sn] = true
	}
	if hs := huddleServices(f); len(hs) != 2 {
		t.Errorf("want two Huddle instances built from the repo, found %v", hs)
	}
	for name, s := range f.Services {
		for dep := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
		for _, v := range s.Volumes {
			vol, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(vol, ".") && !strings.HasPrefix(vol, "/") {
				if _, ok := f.Volumes[vol]; !ok {
					t.Errorf("%s mounts undeclared volume %s", name, vol)
				}
			}
		}
	}
}

func TestCompose_HuddleEnvironmentIsValidConfiguration(t *testing.T) {
	f := loadCompose(t)
	for _, name := range huddleServices(f) {
		s := f.Services[name]
		t.Run(name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range s.Environment {
				if strings.HasPrefix(k, "HUDDLE_") && !IsVar(k) {
					t.Errorf("%s sets %s, which Huddle does not read", name, k)
				}
				env[k] = interpolate(v)
			}
			env["HUDDLE_DATA_DIR"] = t.TempDir()
			cfg, err := load(func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("config.Load rejects %s's environment: %v", name, err)
			}
			if cfg.EmbeddedPostgres() || cfg.EmbeddedNATS() {
				t.Error("the compose instances must use the compose Postgres and NATS")
			}
			if cfg.JWTSecretFile != "" {
				t.Error("instances behind one load balancer need one shared HUDDLE_JWT_SECRET")
			}
			db, err := url.Parse(cfg.DatabaseURL)
			if err != nil || f.Services[db.Hostname()].Image == "" {
				t.Errorf("HUDDLE_DATABASE_URL host %q is not a compose service", db.Hostname())
			}
			for _, u := range strings.Split(cfg.NATSURL, ",") {
				nu, err := url.Parse(u)
				if err != nil || !strings.HasPrefix(f.Services[nu.Hostname()].Image, "nats:") {
					t.Errorf("HUDDLE_NATS_URL names %q, not a NATS service", u)
				}
				if _, ok := s.DependsOn[nu.Hostname()]; !ok {
					t.Errorf("%s does not depend on %s", name, nu.Hostname())
				}
			}
			if _, ok := s.DependsOn[db.Hostname()]; !ok {
				t.Errorf("%s does not depend on %s", name, db.Hostname())
			}
			if cfg.StreamReplicas != 3 {
				t.Errorf("HUDDLE_STREAM_REPLICAS=%d on a three-node cluster, want 3", cfg.StreamReplicas)
			}
		})
	}
}

func TestCompose_DockerfileBuildsTheServer(t *testing.T) {
	f := loadCompose(t)
	for _, name := range huddleServices(f) {
		b := f.Services[name].Build
		dockerfile := b.Dockerfile
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		body, err := os.ReadFile(filepath.Join(repoRoot, b.Context, dockerfile))
		if err != nil {
			t.Fatalf("%s builds from %s: %v", name, dockerfile, err)
		}
		text := string(body)
		for _, want := range []string{"FROM golang:", "FROM debian:", "./cmd/huddle", `CMD ["serve"]`} {
			if !strings.Contains(text, want) {
				t.Errorf("Dockerfile lacks %q", want)
			}
		}
	}
}

func TestREADME_DocumentsEveryVariable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars {
		if !strings.Contains(string(b), "`"+v.Name+"`") {
			t.Errorf("README.md's configuration table lacks %s", v.Name)
		}
	}
}
