// Command metricsadapter serves custom.metrics.k8s.io for the local control plane with the
// upstream custom-metrics-apiserver and its in-memory test provider
// (sigs.k8s.io/custom-metrics-apiserver/test-adapter/provider): values are POSTed to
//
//	http://<write-address>/write-metrics/namespaces/<ns>/pods/<pod>/<metric>   (body: "1500m")
//
// and read back by the HPA controller through the API server's aggregation layer. kubellm's
// e2e tests and demo write the per-pod values the chart's prometheus-adapter rules compute.
//
// It differs from the upstream test-adapter command only in where the write endpoint listens
// (upstream: every interface, port 8080) and in serving custom metrics only (external
// metrics belong to KEDA on this cluster).
package main

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/emicklei/go-restful/v3"
	"k8s.io/component-base/logs"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver/metrics"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
	fakeprov "sigs.k8s.io/custom-metrics-apiserver/test-adapter/provider"
)

func main() {
	logs.InitLogs()
	defer logs.FlushLogs()

	adapter := &basecmd.AdapterBase{Name: "kubelocal-metrics-adapter"}
	var writeAddress string
	adapter.Flags().StringVar(&writeAddress, "write-address", "127.0.0.1:0", "where values are POSTed")
	logs.AddFlags(adapter.Flags())
	if err := adapter.Flags().Parse(os.Args); err != nil {
		klog.Fatalf("unable to parse flags: %v", err)
	}

	client, err := adapter.DynamicClient()
	if err != nil {
		klog.Fatalf("unable to construct dynamic client: %v", err)
	}
	mapper, err := adapter.RESTMapper()
	if err != nil {
		klog.Fatalf("unable to construct discovery REST mapper: %v", err)
	}
	provider, writes := fakeprov.NewFakeProvider(client, mapper)
	adapter.WithCustomMetrics(provider)
	if err := metrics.RegisterMetrics(legacyregistry.Register); err != nil {
		klog.Fatalf("unable to register metrics: %v", err)
	}

	container := restful.NewContainer()
	container.Add(writes)
	go func() {
		server := &http.Server{Addr: writeAddress, Handler: container, ReadHeaderTimeout: 3 * time.Second}
		klog.Fatal(server.ListenAndServe())
	}()
	if err := adapter.Run(context.Background()); err != nil {
		klog.Fatalf("unable to run custom metrics adapter: %v", err)
	}
}
