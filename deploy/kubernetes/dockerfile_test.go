package kubernetes_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestImageMatchesDockerfile: the manifests give only args because the
// image's entrypoint is the ebbflow binary, and they run as the image's
// user; both facts come from deploy/docker/Dockerfile.
func TestImageMatchesDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var entrypoint, user string
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "FROM ") {
			entrypoint, user = "", "" // only the last stage counts
		}
		if v, ok := strings.CutPrefix(l, "ENTRYPOINT "); ok {
			entrypoint = v
		}
		if v, ok := strings.CutPrefix(l, "USER "); ok {
			user = v
		}
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 || !strings.HasSuffix(ep[0], "/ebbflow") {
		t.Errorf("Dockerfile ENTRYPOINT %s: the manifests expect the exec form of the ebbflow binary alone ([\"/ebbflow\"]), so that args start with the subcommand", entrypoint)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid != "65532" {
		t.Errorf("Dockerfile USER %q: the manifests run as uid %d (runAsUser)", user, nonRootUID)
	}
}
