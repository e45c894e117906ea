package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/ebbflow/ebbflow/jobcluster"
)

func postSavepoint(ctx context.Context, base string) (jobcluster.SavepointStatus, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/savepoints", nil)
	return doSavepoint(req, http.StatusAccepted)
}

func getSavepoint(ctx context.Context, base string, id int64) (jobcluster.SavepointStatus, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/savepoints/"+strconv.FormatInt(id, 10), nil)
	return doSavepoint(req, http.StatusOK)
}

func doSavepoint(req *http.Request, want int) (jobcluster.SavepointStatus, error) {
	var sp jobcluster.SavepointStatus
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sp, fmt.Errorf("JobManager at %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return sp, fmt.Errorf("JobManager at %s: %s: %s", req.URL.Host, resp.Status, e.Error)
	}
	if err := json.Unmarshal(b, &sp); err != nil {
		return sp, fmt.Errorf("JobManager at %s: bad answer: %w", req.URL.Host, err)
	}
	return sp, nil
}

func getRescales(ctx context.Context, base string) ([]jobcluster.RescaleRecord, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/rescales", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JobManager at %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JobManager at %s: %s", req.URL.Host, resp.Status)
	}
	var recs []jobcluster.RescaleRecord
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		return nil, fmt.Errorf("JobManager at %s: bad answer: %w", req.URL.Host, err)
	}
	return recs, nil
}
