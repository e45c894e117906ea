package cli

import (
	"context"

	"github.com/ebbflow/ebbflow/checkpoint"
)

func openS3(ctx context.Context, s *settings, dir string) (checkpoint.Storage, error) {
	return nil, usageError("config key checkpoint.dir %q: S3 storage is not wired in yet", dir)
}
