//go:build unix

package e2e

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// The status page in a real browser: Debian's headless Chromium renders it
// (the screenshot is kept), and a SAN made of markup is text in the DOM,
// never an element.
func TestStatusPageInChromium(t *testing.T) {
	browser := findChromium(t)
	e := startStatusExporter(t)
	url := e.URL("/")

	dom := runChromium(t, browser, "--dump-dom", url)
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatalf("parsing the DOM Chromium dumped: %v", err)
	}
	var text strings.Builder
	elements := map[string]int{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.ElementNode:
			elements[n.Data]++
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s> has an event handler attribute %s=%q", n.Data, a.Key, a.Val)
				}
			}
		case html.TextNode:
			text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for _, el := range []string{"script", "img", "iframe", "object", "embed", "b", "i"} {
		if elements[el] > 0 {
			t.Errorf("the DOM has %d <%s> element(s): certificate markup was interpreted", elements[el], el)
		}
	}
	if elements["tr"] < 5 || elements["section"] != 4 {
		t.Errorf("the page did not render its tables: elements %v", elements)
	}
	// Shown as text: the browser's DOM holds the names literally...
	for _, want := range []string{statusSANScript, statusSANImg, "Evil <i>CA</i>", "<b>evil</b>.example.com", "issuer_unexpected", "testlog"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the page's text lacks %q", want)
		}
	}
	// ...and serializes them escaped.
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;.example.com", `"&gt;&lt;img src=x onerror=alert(1)&gt;.example.com`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the dumped DOM lacks %q", want)
		}
	}
	if lower := strings.ToLower(dom); strings.Contains(lower, "<script") || strings.Contains(lower, "<img") {
		t.Error("the dumped DOM contains a <script> or <img> element")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	dir := os.Getenv("CT_EXPORTER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	shot, err := filepath.Abs(filepath.Join(dir, "status-page.png"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(shot) // so that a stale screenshot cannot pass for this one
	runChromium(t, browser, "--screenshot="+shot, url)
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("Chromium wrote no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 700 {
		t.Errorf("screenshot is %dx%d, want about 1400x1000", b.Dx(), b.Dy())
	}
	// The page was painted, not a blank window: the red of the
	// issuer_unexpected badge is on screen.
	if n := pixelsNear(img, 0xcf, 0x22, 0x2e); n < 50 {
		t.Errorf("only %d pixels of the issuer_unexpected red in the screenshot", n)
	}
	t.Logf("screenshot: %s", shot)
}

// findChromium returns Debian's chromium (or another distribution's
// chromium-browser); without either the test is skipped, or fails in CI.
func findChromium(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("chromium-browser"); err == nil {
		return path
	}
	return testenv.Require(t, "chromium", "chromium")
}

// runChromium runs headless Chromium once on a URL and returns its
// standard output. The browser gets a profile of its own and is killed,
// with every process it started, if it does not finish in time.
func runChromium(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--window-size=1400,1000",
		"--user-data-dir=" + t.TempDir(),
	}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Chromium forks renderer and zygote processes: kill the whole group,
	// and do not wait forever for pipes they may hold open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v (context: %v)\nstderr:\n%s", strings.Join(args, " "), err, ctx.Err(), stderr.String())
	}
	return stdout.String()
}

// pixelsNear counts the pixels within a small distance of a colour.
func pixelsNear(img image.Image, r, g, b uint8) int {
	near := func(a uint32, want uint8) bool {
		d := int(a>>8) - int(want)
		return d > -12 && d < 12
	}
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr, r) && near(pg, g) && near(pb, b) {
				n++
			}
		}
	}
	return n
}
