package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// NodeStatus is what a running node's monitoring endpoint (Config.Monitor)
// says of the cluster and of the streams it holds.
type NodeStatus struct {
	// Server is the node's name; Cluster, MetaLeader and Size are empty or
	// zero for a broker that is not in a cluster.
	Server     string
	Cluster    string
	MetaLeader string
	Size       int
	Streams    []StreamStatus
}

// StreamStatus is one stream as a node sees it: the node leading it and
// the other replicas.
type StreamStatus struct {
	Name     string
	Messages uint64
	Leader   string
	Replicas []ReplicaStatus
}

// ReplicaStatus is a follower of a stream: Current when it has every
// message the leader has, Offline when the leader has not heard from it.
type ReplicaStatus struct {
	Name             string
	Current, Offline bool
	Lag              uint64
}

// maxMonitorReply bounds a monitoring endpoint's answer.
const maxMonitorReply = 32 << 20

// QueryStatus asks the monitoring endpoint at addr (host:port, loopback
// only, as Config.Monitor) for the node's view of the cluster and its
// streams.
func QueryStatus(ctx context.Context, addr string) (*NodeStatus, error) {
	hp, err := parseHostPort("monitor address", addr)
	if err != nil {
		return nil, err
	}
	if !isLoopback(hp.host) {
		return nil, fmt.Errorf("%w: the monitoring endpoint is on a loopback address, not %q", ErrConfig, addr)
	}
	var varz struct {
		Name string `json:"server_name"`
	}
	if err := getJSON(ctx, "http://"+addr+"/varz", &varz); err != nil {
		return nil, err
	}
	var jsz server.JSInfo
	if err := getJSON(ctx, "http://"+addr+"/jsz?accounts=true&streams=true", &jsz); err != nil {
		return nil, err
	}
	st := &NodeStatus{Server: varz.Name}
	if m := jsz.Meta; m != nil {
		st.Cluster, st.MetaLeader, st.Size = m.Name, m.Leader, m.Size
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			ss := StreamStatus{Name: s.Name, Messages: s.State.Msgs, Leader: st.Server}
			if c := s.Cluster; c != nil {
				ss.Leader = c.Leader
				for _, r := range c.Replicas {
					ss.Replicas = append(ss.Replicas, ReplicaStatus{Name: r.Name, Current: r.Current, Offline: r.Offline, Lag: r.Lag})
				}
			}
			st.Streams = append(st.Streams, ss)
		}
	}
	slices.SortFunc(st.Streams, func(a, b StreamStatus) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("monitoring endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("monitoring endpoint: %s answered %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMonitorReply+1))
	if err != nil {
		return fmt.Errorf("monitoring endpoint: %w", err)
	}
	if len(b) > maxMonitorReply {
		return fmt.Errorf("monitoring endpoint: %s answered more than %d bytes", url, maxMonitorReply)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("monitoring endpoint: %s: %w", url, err)
	}
	return nil
}
