package cli

import (
	"context"

	"github.com/ebbflow/ebbflow/checkpoint"
)

// openS3 opens s3:// checkpoint storage from the s3.* keys. Errors name the
// key or endpoint and never contain the secret.
func openS3(ctx context.Context, s *settings, dir string) (checkpoint.Storage, error) {
	cfg := checkpoint.S3Config{
		URL:           dir,
		Endpoint:      s.str("s3.endpoint"),
		Region:        s.str("s3.region"),
		AccessKey:     s.str("s3.access-key"),
		SecretKey:     s.str("s3.secret-key"),
		SecretKeyFile: s.str("s3.secret-key-file"),
		UseTLS:        s.flag("s3.tls"),
		CAFile:        s.str("s3.ca-file"),
		CreateBucket:  s.flag("s3.create-bucket"),
	}
	if err := cfg.Validate(); err != nil {
		return nil, usageError("%v", err)
	}
	return checkpoint.OpenS3(ctx, cfg)
}
