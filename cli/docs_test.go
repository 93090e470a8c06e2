package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// Every flag the worker accepts is documented in docs/configuration.md.
func TestEveryFlagIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	cmd := newRootCommand(nil)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		require.True(t, strings.Contains(string(doc), "`--"+f.Name) || strings.Contains(string(doc), ", --"+f.Name),
			"flag --%s is not in docs/configuration.md", f.Name)
	})
}
