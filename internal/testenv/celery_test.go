package testenv

import "testing"

func TestModernCelery(t *testing.T) {
	site := ModernCelery(t)
	if err := checkModernCelery(site); err != nil {
		t.Fatal(err)
	}
}
