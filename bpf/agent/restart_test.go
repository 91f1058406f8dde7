//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/bpf/agent"
	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// childEnv names the spec file of an agent that the test binary runs as a
// process of its own, so that a test can kill it with SIGKILL.
const childEnv = "TENANTPLANE_TEST_NETMETER_AGENT"

type childSpec struct {
	Config     agent.Config `json:"config"`
	Kubeconfig string       `json:"kubeconfig"`
}

// runChild runs the agent of a spec file until SIGTERM.
func runChild(specPath string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := child(specPath, log); err != nil {
		log.Error("agent", "err", err)
		return 1
	}
	return 0
}

func child(specPath string, log *slog.Logger) error {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec childSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", spec.Kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	a, err := agent.New(spec.Config, kube, nil, log, func() time.Time { return time.Now().UTC() })
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

// process is an agent running as a child process.
type process struct {
	cmd  *exec.Cmd
	done chan error
}

// startProcess runs an agent with cfg as a child process; its log goes to
// agents.log in a folder of the test, shown when the test fails.
func (w *world) startProcess(cfg agent.Config) *process {
	w.t.Helper()
	dir := filepath.Join(w.stateDir, "..")
	spec, err := json.Marshal(childSpec{Config: cfg, Kubeconfig: w.kube.KubeconfigPath()})
	require.NoError(w.t, err)
	specPath := filepath.Join(dir, "agent.json")
	require.NoError(w.t, os.WriteFile(specPath, spec, 0o600))
	logPath := filepath.Join(dir, "agents.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(w.t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+specPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(w.t, cmd.Start())
	_ = logf.Close()
	p := &process{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	w.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		ended := <-p.done
		if w.t.Failed() {
			b, _ := os.ReadFile(logPath)
			w.t.Logf("agent processes' log (the last ended with %v):\n%s", ended, b)
		}
	})
	return p
}

// kill sends sig and returns how the process ended.
func (p *process) kill(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal the agent: %w", err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the agent did not end on %v", sig)
	}
}

// killed sends SIGKILL and reports an agent that ended otherwise.
func killed(t *testing.T, p *process) {
	if err := p.kill(syscall.SIGKILL); err == nil || err.Error() != "signal: killed" {
		t.Errorf("killing the agent: %v", err)
	}
}

// pinned waits until the program is pinned on each pod's veth, both ways.
func (w *world) pinned(pods ...*pod) {
	w.t.Helper()
	netlab.Eventually(w.t, 30*time.Second, func() error {
		for _, p := range pods {
			for _, d := range []string{"egress", "ingress"} {
				if _, err := os.Stat(filepath.Join(w.pins, "links", fmt.Sprintf("%d-%s", p.ifindex, d))); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// An agent killed with SIGKILL in the middle of transfers, twice, with
// acknowledgements lost and an outage of the ingest API in between: the
// usage stored equals the nftables reference to the byte, so nothing was
// lost while no agent ran and nothing resent was counted twice.
func TestRestartsAndOutagesNeitherLoseNorDoubleAByte(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.addPod(w.tenant(), "a", 0xa)
	w.installReference()
	cfg := w.config()
	cfg.MaxPendingBatches = 3
	agents := []*process{w.startProcess(cfg)}
	w.pinned(a)

	const total = 24 << 20
	var written atomic.Int64
	// Each step waits until the main transfer has sent its share.
	steps := []struct {
		at int64
		do func()
	}{
		{4 << 20, func() { killed(t, agents[0]) }},
		{7 << 20, func() { agents = append(agents, w.startProcess(cfg)) }},
		{11 << 20, func() { w.gate.mode.Store(gateLostAck) }},
		{14 << 20, func() { w.gate.mode.Store(gateDown) }},
		{17 << 20, func() { killed(t, agents[1]) }},
		{19 << 20, func() { agents = append(agents, w.startProcess(cfg)) }},
		{21 << 20, func() { w.gate.mode.Store(gateOpen) }},
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, s := range steps {
			for written.Load() < s.at {
				time.Sleep(5 * time.Millisecond)
			}
			s.do()
		}
	})
	var reverse sync.WaitGroup
	reverse.Go(func() {
		tcp(t, w.inet, a.ns, a.v6, 12<<20+1, func(int) { time.Sleep(8 * time.Millisecond) })
	})
	tcp(t, a.ns, w.inet, inetAddr4, total, func(n int) {
		written.Store(int64(n))
		time.Sleep(8 * time.Millisecond)
	})
	wg.Wait()
	reverse.Wait()
	settle(t, w.nodeCounters)

	want := map[string]int64{}
	for f, c := range w.reference() {
		if c.WireBytes > 0 {
			want[a.namespace+"/"+agent.Resource(f.class, f.direction)] += int64(c.WireBytes)
		}
	}
	require.Len(t, want, 2)
	netlab.Eventually(t, 30*time.Second, func() error {
		if got := w.usage(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("stored usage %v, want %v", got, want)
		}
		return nil
	})
	require.Positive(t, w.gate.refused.Load(), "the outage was seen")
	require.NoError(t, agents[2].kill(syscall.SIGTERM))
	require.Equal(t, want, w.usage(), "a clean stop sends nothing more")
}
