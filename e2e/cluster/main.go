// Command kubelocal is a multicall binary holding the Kubernetes control plane
// components that kubellm's e2e tests run as separate local processes:
//
//	kubelocal apiserver          [kube-apiserver flags]
//	kubelocal controller-manager [kube-controller-manager flags]
//	kubelocal scheduler          [kube-scheduler flags]
//	kubelocal etcd --data-dir=DIR --listen=127.0.0.1:PORT
//	kubelocal pki DIR            (CA, apiserver serving cert, service-account key)
//	kubelocal version
//
// Every component runs in its own process: they share global feature-gate
// registries and must not run in one process (kubernetes#130483).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/component-base/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "time/tzdata"
)

const usage = "usage: kubelocal apiserver|controller-manager|scheduler|etcd|pki|version [args...]"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	var cmd *cobra.Command
	switch name {
	case "apiserver", "kube-apiserver":
		cmd = apiserver.NewAPIServerCommand()
	case "controller-manager", "kube-controller-manager":
		cmd = controllermanager.NewControllerManagerCommand()
	case "scheduler", "kube-scheduler":
		cmd = scheduler.NewSchedulerCommand()
	case "etcd":
		os.Exit(runEtcd(args))
	case "pki":
		os.Exit(runPKI(args))
	case "version", "--version":
		fmt.Println(version.Get().GitVersion)
		return
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	// cobra reads os.Args[1:] unless told otherwise; drop the dispatch word.
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
}
