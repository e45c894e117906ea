// Package etcdlocal runs an embedded single-member etcd server on loopback
// for `ebbflow local`, keeping its data in a folder so a second run of the
// same command finds the job's checkpoint pointer again.
package etcdlocal

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a running embedded etcd.
type Server struct {
	e        *embed.Etcd
	Endpoint string
}

type ports struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

// Start starts etcd with its data in dir. It reuses the ports of the last
// run when they are free (the member's peer URL is stored in its data).
func Start(dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data folder %s: %w", dir, err)
	}
	pf := filepath.Join(dir, "ports.json")
	var p ports
	if b, err := os.ReadFile(pf); err == nil {
		_ = json.Unmarshal(b, &p)
	}
	if !free(p.Client) || p.Client == 0 {
		p.Client = pick()
	}
	if !free(p.Peer) || p.Peer == 0 || p.Peer == p.Client {
		p.Peer = pick()
	}
	b, _ := json.Marshal(p)
	if err := os.WriteFile(pf, b, 0o600); err != nil {
		return nil, fmt.Errorf("etcd data folder %s: %w", dir, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "ebbflow-local"
	cfg.Dir = filepath.Join(dir, "member-data")
	cu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(p.Client)}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(p.Peer)}
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.LogLevel = "error"
	cfg.Logger = "zap"
	// etcd logs harmless errors on every shutdown; its health is checked
	// through ReadyNotify and Err instead.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready in 30s")
	}
	return &Server{e: e, Endpoint: cu.Host}, nil
}

// Close stops etcd.
func (s *Server) Close() { s.e.Close() }

func free(port int) bool {
	if port == 0 {
		return false
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func pick() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
