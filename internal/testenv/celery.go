package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// ModernCeleryVar names a Python site directory holding Celery 5.5 or later (with its kombu,
// billiard, vine and amqp) for Debian's /usr/bin/python3. When it is unset, the tests unpack
// the lab's pure-Python tarball from ../shared/lab/modern-celery/ beside the checkout, if it is
// there; a user with PyPI would `pip install celery==5.6.3 --target DIR` and set the variable.
const ModernCeleryVar = "CCWORKER_MODERN_CELERY"

var modern struct {
	once sync.Once
	site string
	err  error
}

// ModernCelery returns a directory to put first on PYTHONPATH so that /usr/bin/python3
// imports a modern Celery (5.6.3 from the lab tarball), or skips the test saying why.
func ModernCelery(t testing.TB) string {
	t.Helper()
	modern.once.Do(func() { modern.site, modern.err = findModernCelery() })
	if modern.err != nil {
		t.Skipf("no modern Celery: %v", modern.err)
	}
	return modern.site
}

func findModernCelery() (string, error) {
	if dir := os.Getenv(ModernCeleryVar); dir != "" {
		return dir, checkModernCelery(dir)
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	tarballs, _ := filepath.Glob(filepath.Join(root, "..", "shared", "lab", "modern-celery", "celery-*-site.tar.xz"))
	if len(tarballs) == 0 {
		return "", fmt.Errorf("%s is unset and no ../shared/lab/modern-celery/celery-*-site.tar.xz beside the checkout "+
			"(set %s to a site directory with Celery >= 5.5)", ModernCeleryVar, ModernCeleryVar)
	}
	tarball := tarballs[len(tarballs)-1]
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	site := filepath.Join(cache, "ccworker", "modern-celery", strings.TrimSuffix(filepath.Base(tarball), ".tar.xz"))
	if checkModernCelery(site) == nil {
		return site, nil
	}
	// Unpack into a fresh directory and rename it into place, so that test binaries of several
	// packages running at once never see a half-written site.
	if err := os.MkdirAll(filepath.Dir(site), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(site), "unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command("tar", "-xJf", tarball, "-C", tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("unpack %s: %v: %s", tarball, err, out)
	}
	if err := os.Rename(tmp, site); err != nil && checkModernCelery(site) != nil {
		return "", fmt.Errorf("install %s: %w", site, err)
	}
	return site, checkModernCelery(site)
}

// checkModernCelery imports celery from site with Debian's Python and wants 5.5 or later.
func checkModernCelery(site string) error {
	cmd := exec.Command("/usr/bin/python3", "-c",
		"import celery, sys; v = tuple(int(x) for x in celery.__version__.split('.')[:2]); "+
			"assert celery.__file__.startswith(sys.argv[1]), celery.__file__; assert v >= (5, 5), celery.__version__; print(celery.__version__)",
		site)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+site)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("celery >= 5.5 not importable from %s: %v: %s", site, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// repoRoot is the module's root directory, found from this source file.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the module root")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}
