// kindnet-offline: the pod network of a kind cluster whose node image was built offline.
//
// kind's default CNI is kindnetd, whose source is not published as a Go module, so the offline
// node image carries this small program in its place, behind kind's own hook
// (/kind/manifests/default-cni.yaml). It does, for IPv4, what kindnetd does on every node:
//
//  1. waits until the node has a pod CIDR (kube-controller-manager allocates one per node);
//  2. writes the node's CNI configuration: the standard ptp plugin (a veth per pod, routed, no
//     bridge) with host-local addresses from that CIDR, then portmap (hostPort);
//  3. routes every other node's pod CIDR through that node's InternalIP (all nodes share one
//     Docker network, so no tunnel is needed);
//  4. masquerades pod traffic leaving the cluster's pod subnet (an nftables table of its own);
//  5. refuses (ICMP host unreachable) any packet still addressed to a Service IP after the NAT
//     stage, i.e. one no kube-proxy rule translated (a Service created a moment ago, or the
//     API server dialling before kube-proxy is up). kindnetd leaves such packets to the default
//     route; on a machine whose network answers any TLS port (a transparent proxy), a client
//     would then hold a connection to a stranger — the aggregator did, to metrics-server's IP.
//
// It runs as a hostNetwork DaemonSet and re-checks the nodes every few seconds.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	cniConfigName = "10-kindnet.conflist"
	nftTableName  = "kindnet-offline"
	resync        = 5 * time.Second
)

type config struct {
	nodeName  string
	podSubnet *net.IPNet
	cniDir    string
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	cfg, err := configFromEnv()
	if err != nil {
		log.Fatalf("kindnet-offline: %v", err)
	}
	client, err := apiClient()
	if err != nil {
		log.Fatalf("kindnet-offline: %v", err)
	}
	if err := ensureRules(cfg.podSubnet, nil); err != nil {
		log.Fatalf("kindnet-offline: nftables rules: %v", err)
	}
	log.Printf("node %s, pod subnet %s: masquerade rule in nftables table ip %s", cfg.nodeName, cfg.podSubnet, nftTableName)
	routes := map[string]string{} // pod CIDR -> gateway, as installed by this process
	serviceCIDRs := ""            // the Service CIDRs the reject rules cover now
	for {
		if err := reconcile(client, cfg, routes); err != nil {
			log.Printf("reconcile: %v", err)
		}
		if cidrs, err := listServiceCIDRs(client); err != nil {
			log.Printf("listing Service CIDRs: %v", err)
		} else if key := fmt.Sprint(cidrs); key != serviceCIDRs {
			if err := ensureRules(cfg.podSubnet, cidrs); err != nil {
				log.Printf("nftables rules: %v", err)
			} else {
				serviceCIDRs = key
				log.Printf("untranslated packets to the Service CIDRs %v are refused", cidrs)
			}
		}
		time.Sleep(resync)
	}
}

// listServiceCIDRs reads the cluster's Service IP ranges (networking.k8s.io/v1 ServiceCIDR).
func listServiceCIDRs(client *kubernetes.Clientset) ([]*net.IPNet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found, err := client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var cidrs []*net.IPNet
	for _, item := range found.Items {
		for _, text := range item.Spec.CIDRs {
			if _, cidr, err := net.ParseCIDR(text); err == nil && cidr.IP.To4() != nil {
				cidrs = append(cidrs, cidr)
			}
		}
	}
	return cidrs, nil
}

func configFromEnv() (config, error) {
	nodeName := os.Getenv("NODE_NAME")
	if nodeName == "" {
		return config{}, fmt.Errorf("NODE_NAME is not set (the DaemonSet passes spec.nodeName)")
	}
	_, subnet, err := net.ParseCIDR(os.Getenv("POD_SUBNET"))
	if err != nil || subnet.IP.To4() == nil {
		return config{}, fmt.Errorf("POD_SUBNET %q is not an IPv4 CIDR (this network is IPv4 only)", os.Getenv("POD_SUBNET"))
	}
	cniDir := os.Getenv("CNI_CONFIG_DIR")
	if cniDir == "" {
		cniDir = "/etc/cni/net.d"
	}
	return config{nodeName: nodeName, podSubnet: subnet, cniDir: cniDir}, nil
}

// apiClient talks to the API server directly when kind passes its address
// (CONTROL_PLANE_ENDPOINT): the Service IP only works once kube-proxy runs, which needs the
// network this program sets up.
func apiClient() (*kubernetes.Clientset, error) {
	restConfig, err := rest.InClusterConfig()
	if err != nil {
		return nil, err
	}
	if endpoint := os.Getenv("CONTROL_PLANE_ENDPOINT"); endpoint != "" {
		restConfig.Host = "https://" + endpoint
	}
	return kubernetes.NewForConfig(restConfig)
}

func reconcile(client *kubernetes.Clientset, cfg config, routes map[string]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	wanted := map[string]string{}
	for _, node := range nodes.Items {
		cidr := node.Spec.PodCIDR
		if cidr == "" {
			continue
		}
		if node.Name == cfg.nodeName {
			if err := writeCNIConfig(cfg.cniDir, cidr); err != nil {
				return err
			}
			continue
		}
		if ip := internalIPv4(node); ip != "" {
			wanted[cidr] = ip
		}
	}
	for cidr, gateway := range wanted {
		if routes[cidr] == gateway {
			continue
		}
		if err := replaceRoute(cidr, gateway); err != nil {
			return err
		}
		routes[cidr] = gateway
		log.Printf("route %s via %s", cidr, gateway)
	}
	for cidr := range routes {
		if _, ok := wanted[cidr]; !ok {
			deleteRoute(cidr)
			delete(routes, cidr)
			log.Printf("route %s removed (its node is gone)", cidr)
		}
	}
	return nil
}

func internalIPv4(node corev1.Node) string {
	for _, address := range node.Status.Addresses {
		if address.Type == corev1.NodeInternalIP && net.ParseIP(address.Address).To4() != nil {
			return address.Address
		}
	}
	return ""
}

// writeCNIConfig writes the conflist atomically, and only when it changes (containerd watches
// the directory and reloads on every write).
func writeCNIConfig(dir, podCIDR string) error {
	mtu := 1500
	if link, err := defaultRouteLink(); err == nil {
		mtu = link.Attrs().MTU
	}
	conflist := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type": "ptp",
				"mtu":  mtu,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  []any{map[string]string{"dst": "0.0.0.0/0"}},
					"ranges":  []any{[]any{map[string]string{"subnet": podCIDR}}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	text, err := json.MarshalIndent(conflist, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, cniConfigName)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(text) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	temporary := path + ".tmp"
	if err := os.WriteFile(temporary, text, 0o644); err != nil {
		return err
	}
	if err := os.Rename(temporary, path); err != nil {
		return err
	}
	log.Printf("CNI configuration %s written for pod CIDR %s (mtu %d)", path, podCIDR, mtu)
	return nil
}

func defaultRouteLink() (netlink.Link, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, route := range routes {
		if route.Dst == nil || route.Dst.String() == "0.0.0.0/0" {
			return netlink.LinkByIndex(route.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no default route")
}

func replaceRoute(cidr, gateway string) error {
	_, dst, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: net.ParseIP(gateway)}); err != nil {
		return fmt.Errorf("route %s via %s: %w", cidr, gateway, err)
	}
	return nil
}

func deleteRoute(cidr string) {
	if _, dst, err := net.ParseCIDR(cidr); err == nil {
		if err := netlink.RouteDel(&netlink.Route{Dst: dst}); err != nil && !strings.Contains(err.Error(), "no such process") {
			log.Printf("removing route %s: %v", cidr, err)
		}
	}
}

// ensureRules (re)creates `table ip kindnet-offline`, in one transaction:
//
//	postrouting (nat, srcnat): ip saddr POD_SUBNET ip daddr != POD_SUBNET masquerade
//	output, forward (filter):  ip daddr SERVICE_CIDR reject with icmp host-unreachable
//
// The filter hooks run after DNAT: a packet kube-proxy translated is addressed to a pod by then.
func ensureRules(podSubnet *net.IPNet, serviceCIDRs []*net.IPNet) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: nftTableName}
	conn.DelTable(table)
	_ = conn.Flush() // absent on a first start: nothing to delete
	conn.AddTable(table)
	postrouting := conn.AddChain(&nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	exprs := append(matchNetwork(12, podSubnet, expr.CmpOpEq), matchNetwork(16, podSubnet, expr.CmpOpNeq)...) // saddr, daddr
	conn.AddRule(&nftables.Rule{Table: table, Chain: postrouting, Exprs: append(exprs, &expr.Masq{})})
	for _, hook := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"output", nftables.ChainHookOutput}, {"forward", nftables.ChainHookForward}} {
		chain := conn.AddChain(&nftables.Chain{
			Name: hook.name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hook.hook, Priority: nftables.ChainPriorityFilter,
		})
		for _, cidr := range serviceCIDRs {
			reject := &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 1} // host unreachable
			conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(matchNetwork(16, cidr, expr.CmpOpEq), reject)})
		}
	}
	return conn.Flush()
}

// matchNetwork compares the IPv4 address at offset (12: source, 16: destination) with a network.
func matchNetwork(offset uint32, network *net.IPNet, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.IP(network.Mask).To4(), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: network.IP.To4()},
	}
}
