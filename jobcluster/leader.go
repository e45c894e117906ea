package jobcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ebbflow/ebbflow/internal/cluster"
)

// leaderCache is a standby's view of who leads and where each JobManager's
// REST API is: the election keys and the jobmanagers keys, kept by
// followLeader, so that a forwarded request reads nothing from etcd. It is
// not synced until the first list, nor between a failed watch and the next
// list: then leaderInfo reads etcd directly.
type leaderCache struct {
	// Both kinds of keys lie in [start, end): the jobmanagers keys sort
	// before the election's. Other keys in the range are ignored.
	start, end string
	election   string // prefix of the election keys
	jobmgrs    string // prefix of the jobmanagers keys

	mu         sync.Mutex
	synced     bool
	candidates map[string]candidate // election key → candidate
	addrs      map[string][]byte    // jobmanagers key → its value
}

// candidate is one election key: the oldest one leads.
type candidate struct {
	id  string
	rev int64 // create revision
}

func newLeaderCache(clusterID string) *leaderCache {
	election := cluster.LeaderPrefix(clusterID) + "/"
	jobmgrs := cluster.JobManagerKey(clusterID, "")
	return &leaderCache{start: jobmgrs, end: clientv3.GetPrefixRangeEnd(election), election: election, jobmgrs: jobmgrs}
}

// load replaces the whole view with a list.
func (c *leaderCache) load(kvs []*mvccpb.KeyValue) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.candidates, c.addrs = map[string]candidate{}, map[string][]byte{}
	for _, e := range kvs {
		c.set(e, false)
	}
	c.synced = true
}

// apply applies a watch response's events.
func (c *leaderCache) apply(evs []*clientv3.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		c.set(ev.Kv, ev.Type == clientv3.EventTypeDelete)
	}
}

// set applies one key; c.mu is held.
func (c *leaderCache) set(e *mvccpb.KeyValue, deleted bool) {
	key := string(e.Key)
	switch {
	case strings.HasPrefix(key, c.election):
		if deleted {
			delete(c.candidates, key)
		} else {
			c.candidates[key] = candidate{id: string(e.Value), rev: e.CreateRevision}
		}
	case strings.HasPrefix(key, c.jobmgrs):
		if deleted {
			delete(c.addrs, key)
		} else {
			c.addrs[key] = e.Value
		}
	}
}

func (c *leaderCache) unsync() {
	c.mu.Lock()
	c.synced = false
	c.mu.Unlock()
}

// leader returns the leader's id ("" when none leads) and the value under
// its jobmanagers key (registered: the key exists); synced is false, and
// the rest empty, while the view is not synced.
func (c *leaderCache) leader() (id string, val []byte, registered, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		return "", nil, false, false
	}
	var lead *candidate
	for _, cand := range c.candidates {
		if lead == nil || cand.rev < lead.rev {
			lead = &cand
		}
	}
	if lead == nil {
		return "", nil, false, true
	}
	val, registered = c.addrs[c.jobmgrs+lead.id]
	return lead.id, val, registered, true
}

// followLeader keeps jm.leaders current while this JobManager stands by:
// it lists the election and jobmanagers keys, then watches them from the
// list's revision; on a compacted revision or a watch error it lists
// again. It returns when ctx ends.
func (jm *JobManager) followLeader(ctx context.Context) {
	c := jm.leaders
	defer c.unsync()
	jm.listWatch(ctx, "list the leader and jobmanagers keys", "leader", c.start, []clientv3.OpOption{clientv3.WithRange(c.end)}, true, c.load, c.apply, c.unsync)
}

// leaderInfo finds the leader (the oldest election key) and its REST
// address: from the standby's view when it is synced, else from etcd.
func (jm *JobManager) leaderInfo(ctx context.Context) (cluster.JobManagerInfo, error) {
	id, val, registered, synced := jm.leaders.leader()
	if !synced {
		return jm.readLeaderInfo(ctx)
	}
	if id == "" {
		return cluster.JobManagerInfo{}, errors.New("no JobManager leads right now")
	}
	return jm.resolveLeader(id, val, registered)
}

// readLeaderInfo is leaderInfo read from etcd: two reads.
func (jm *JobManager) readLeaderInfo(ctx context.Context) (cluster.JobManagerInfo, error) {
	resp, err := jm.cfg.Etcd.Get(ctx, cluster.LeaderPrefix(jm.cfg.Cluster)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return cluster.JobManagerInfo{}, fmt.Errorf("etcd: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return cluster.JobManagerInfo{}, errors.New("no JobManager leads right now")
	}
	id := string(resp.Kvs[0].Value)
	if id == jm.cfg.ID {
		return cluster.JobManagerInfo{}, errors.New("this JobManager is becoming the leader")
	}
	r, err := jm.cfg.Etcd.Get(ctx, cluster.JobManagerKey(jm.cfg.Cluster, id))
	if err != nil {
		return cluster.JobManagerInfo{}, fmt.Errorf("etcd: %w", err)
	}
	var val []byte
	if len(r.Kvs) > 0 {
		val = r.Kvs[0].Value
	}
	return jm.resolveLeader(id, val, len(r.Kvs) > 0)
}

// resolveLeader decodes the leader's REST address from the value under its
// jobmanagers key (registered: the key exists).
func (jm *JobManager) resolveLeader(id string, val []byte, registered bool) (cluster.JobManagerInfo, error) {
	var info cluster.JobManagerInfo
	if id == jm.cfg.ID {
		return info, errors.New("this JobManager is becoming the leader")
	}
	key := cluster.JobManagerKey(jm.cfg.Cluster, id)
	if !registered {
		return info, fmt.Errorf("the leader %s has not published a REST address (%s)", id, key)
	}
	if err := json.Unmarshal(val, &info); err != nil || info.HTTP == "" {
		return info, fmt.Errorf("bad value under %s", key)
	}
	return info, nil
}
