package jobcluster

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// listWatch follows a key range until ctx ends: it lists it (load), then
// watches it from the list's revision (apply, per response); on a compacted
// revision or a watch error it calls stale and lists again. Each watch has
// its own context, so breaking out of it to list again also ends it. With
// requireLeader, a member cut off from its cluster ends the watch instead of
// going quiet. listMsg and what name the list and the watch in log lines.
func (jm *JobManager) listWatch(ctx context.Context, listMsg, what, key string, opts []clientv3.OpOption, requireLeader bool,
	load func([]*mvccpb.KeyValue), apply func([]*clientv3.Event), stale func()) {
	for ctx.Err() == nil {
		resp, err := jm.cfg.Etcd.Get(ctx, key, opts...)
		if err != nil {
			if ctx.Err() == nil {
				jm.log.Warn(listMsg, zap.Error(err))
				select {
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			continue
		}
		load(resp.Kvs)
		wctx := ctx
		if requireLeader {
			wctx = clientv3.WithRequireLeader(ctx)
		}
		wctx, stopWatch := context.WithCancel(wctx)
		wc := jm.cfg.Etcd.Watch(wctx, key, append(opts, clientv3.WithRev(resp.Header.Revision+1))...)
		for wr := range wc {
			if wr.CompactRevision != 0 {
				jm.log.Info(what+" watch compacted; listing again", zap.Int64("compactRevision", wr.CompactRevision))
				break
			}
			if err := wr.Err(); err != nil {
				jm.log.Warn(what+" watch", zap.Error(err))
				break
			}
			apply(wr.Events)
		}
		stopWatch()
		stale()
	}
}
