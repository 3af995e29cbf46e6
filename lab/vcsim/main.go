// Command vcsim serves one simulated vCenter (govmomi's simulator) for the DRaaS lab.
//
// It builds an inventory with the names from a JSON config file (datacenter, clusters with
// hosts, datastores mounted on every host, one distributed switch), registers the vAPI
// (/rest) endpoints so tagging works, accepts only the configured credentials, applies the
// configured latencies once the inventory is built, emulates guests that boot (VMware Tools
// running, heartbeat green a moment after power-on, the address of the guest OS set from
// guestinfo.lab.ip when it has none; stopped at power-off), and writes a
// ready file (JSON, written atomically) with its URL and port. It listens on 127.0.0.1, on
// a free port by default.
//
//	vcsim -config site.json -ready ready.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	_ "github.com/vmware/govmomi/vapi/simulator" // registers the /rest endpoints (tagging)
)

// Delay mirrors simulator.DelayConfig with the lab config's field names.
type Delay struct {
	AllMs   int            `json:"all_ms"`
	Jitter  float64        `json:"jitter"`
	Methods map[string]int `json:"methods"`
}

// Config is the inventory and server settings of one site.
type Config struct {
	Listen     string   `json:"listen"`
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Datacenter string   `json:"datacenter"`
	Cluster    string   `json:"cluster"`
	Clusters   int      `json:"clusters"`
	Hosts      int      `json:"hosts"`
	Datastores []string `json:"datastores"`
	DVSwitch   string   `json:"dvswitch"`
	DataDir    string   `json:"data_dir"`
	Delay      Delay    `json:"delay"`
	// GuestBootMs is how long after power-on a guest reports VMware Tools running.
	GuestBootMs int `json:"guest_boot_ms"`
}

func defaults() Config {
	return Config{
		Listen: "127.0.0.1:0", Datacenter: "DC0", Cluster: "Cluster", Clusters: 1, Hosts: 2,
		Datastores: []string{"datastore1"}, DVSwitch: "DSwitch", GuestBootMs: 200,
	}
}

func main() {
	cfgPath := flag.String("config", "", "JSON config file (inventory, credentials, delays)")
	ready := flag.String("ready", "", "write {url, host, port, pid} here (atomically) once serving")
	listen := flag.String("listen", "", "host:port to listen on (overrides the config; port 0 = free port)")
	flag.Parse()

	cfg := defaults()
	if *cfgPath != "" {
		raw, err := os.ReadFile(*cfgPath)
		if err != nil {
			log.Fatalf("vcsim: %v", err)
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			log.Fatalf("vcsim: %s: %v", *cfgPath, err)
		}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "vcsim-")
		if err != nil {
			log.Fatalf("vcsim: %v", err)
		}
		cfg.DataDir = dir
	}

	// Latency is applied only after the inventory is built, so start-up stays fast.
	model := simulator.VPX()
	model.Datacenter = 0
	model.Cluster = 0
	model.Host = 0
	model.Portgroup = 0
	model.Datastore = 0
	model.Machine = 0
	model.Autostart = false
	if err := model.Create(); err != nil {
		log.Fatalf("vcsim: create model: %v", err)
	}
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{Host: cfg.Listen}
	if cfg.Username != "" {
		// With userinfo set, the simulator accepts only these credentials on the SDK.
		model.Service.Listen.User = url.UserPassword(cfg.Username, cfg.Password)
	}
	server := model.Service.NewServer()
	if cfg.Username != "" {
		requireRESTLogin(model.Service.ServeMux, cfg.Username, cfg.Password)
	}

	if err := build(server.URL, cfg); err != nil {
		server.Close()
		log.Fatalf("vcsim: build inventory: %v", err)
	}
	model.DelayConfig = simulator.DelayConfig{
		Delay: cfg.Delay.AllMs, MethodDelay: cfg.Delay.Methods, DelayJitter: cfg.Delay.Jitter,
	}

	simulator.Map.AddHandler(&labHandler{bootDelay: time.Duration(cfg.GuestBootMs) * time.Millisecond})

	host, portStr, _ := net.SplitHostPort(server.URL.Host)
	port, _ := strconv.Atoi(portStr)
	public := *server.URL
	public.User = nil
	if *ready != "" {
		if err := writeReady(*ready, map[string]interface{}{
			"url": public.String(), "host": host, "port": port, "pid": os.Getpid(),
		}); err != nil {
			server.Close()
			log.Fatalf("vcsim: ready file: %v", err)
		}
	}
	log.Printf("vcsim: serving %s (datacenter %q)", public.String(), cfg.Datacenter)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	server.Close()
	model.Remove()
	_ = os.RemoveAll(filepath.Join(cfg.DataDir, "datastores"))
}

// build creates the configured inventory over the simulator's own SDK endpoint.
func build(u *url.URL, cfg Config) error {
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(ctx) }()

	root := object.NewRootFolder(c.Client)
	dc, err := root.CreateDatacenter(ctx, cfg.Datacenter)
	if err != nil {
		return fmt.Errorf("datacenter %q: %w", cfg.Datacenter, err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}

	var hosts []*object.HostSystem
	for n := 1; n <= max(cfg.Clusters, 1); n++ {
		name := cfg.Cluster
		if n > 1 {
			name = fmt.Sprintf("%s-%d", cfg.Cluster, n)
		}
		cluster, err := folders.HostFolder.CreateCluster(ctx, name, types.ClusterConfigSpecEx{})
		if err != nil {
			return fmt.Errorf("cluster %q: %w", name, err)
		}
		for h := 1; h <= cfg.Hosts; h++ {
			hostName := fmt.Sprintf("esx%02d.%s.lab", h, strings.ToLower(name))
			task, err := cluster.AddHost(ctx, types.HostConnectSpec{HostName: hostName}, true, nil, nil)
			if err != nil {
				return err
			}
			info, err := task.WaitForResult(ctx, nil)
			if err != nil {
				return fmt.Errorf("host %q: %w", hostName, err)
			}
			hosts = append(hosts, object.NewHostSystem(c.Client, info.Result.(types.ManagedObjectReference)))
		}
	}

	for _, ds := range cfg.Datastores {
		dir := filepath.Join(cfg.DataDir, "datastores", ds)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for _, h := range hosts {
			dss, err := h.ConfigManager().DatastoreSystem(ctx)
			if err != nil {
				return err
			}
			if _, err := dss.CreateLocalDatastore(ctx, ds, dir); err != nil {
				return fmt.Errorf("datastore %q: %w", ds, err)
			}
		}
	}

	if cfg.DVSwitch != "" {
		spec := types.DVSCreateSpec{ConfigSpec: &types.VMwareDVSConfigSpec{
			DVSConfigSpec: types.DVSConfigSpec{Name: cfg.DVSwitch},
		}}
		task, err := folders.NetworkFolder.CreateDVS(ctx, spec)
		if err != nil {
			return err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("dvswitch %q: %w", cfg.DVSwitch, err)
		}
		dvs := object.NewDistributedVirtualSwitch(c.Client, info.Result.(types.ManagedObjectReference))
		members := types.DVSConfigSpec{}
		for _, h := range hosts {
			members.Host = append(members.Host, types.DistributedVirtualSwitchHostMemberConfigSpec{
				Operation: string(types.ConfigSpecOperationAdd), Host: h.Reference(),
			})
		}
		task, err = dvs.Reconfigure(ctx, &members)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("dvswitch %q hosts: %w", cfg.DVSwitch, err)
		}
	}
	return nil
}

// labHandler is a registry handler that fills two gaps of vcsim 0.24.2:
//   - guest tools status is static: here a guest "boots" (Tools running, heartbeat green,
//     its address from guestinfo.lab.ip if it has none) bootDelay after power-on, and its
//     Tools stop at power-off;
//   - RelocateVM_Task does not move the VM between resource pools' and hosts' VM lists, so
//     the old pool and host keep a reference that outlives the VM (and then breaks
//     container views): here the lists are put right.
type labHandler struct {
	bootDelay time.Duration
}

func (g *labHandler) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "DraasLabHandler", Value: "lab-handler"}
}

func (g *labHandler) PutObject(mo.Reference) {}

func (g *labHandler) RemoveObject(types.ManagedObjectReference) {}

func (g *labHandler) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	ref := obj.Reference()
	if ref.Type != "VirtualMachine" {
		return
	}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	for _, c := range changes {
		switch c.Name {
		case "resourcePool":
			if pool, ok := c.Val.(*types.ManagedObjectReference); ok && pool != nil {
				moveReference("ResourcePool", *pool, ref, func(e mo.Entity) *[]types.ManagedObjectReference {
					return &e.(*simulator.ResourcePool).Vm
				})
			}
			continue
		case "runtime.host":
			if host, ok := c.Val.(*types.ManagedObjectReference); ok && host != nil {
				moveReference("HostSystem", *host, ref, func(e mo.Entity) *[]types.ManagedObjectReference {
					return &e.(*simulator.HostSystem).Vm
				})
			}
			continue
		case "runtime.powerState":
		default:
			continue
		}
		switch c.Val {
		case types.VirtualMachinePowerStatePoweredOff:
			// Synchronous: the power-off call holds the VM's lock, and a client reading the
			// VM right after it must already see Tools stopped.
			setGuest(vm, false)
		case types.VirtualMachinePowerStatePoweredOn:
			go func() {
				time.Sleep(g.bootDelay)
				simulator.Map.WithLock(vm, func() {
					if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
						bootIP(vm)         // the replicated OS configures its address...
						setGuest(vm, true) // ...and, still on, the guest has booted
					}
				})
			}()
		}
	}
}

// moveReference makes vm appear in the VM list of `to` and of no other object of kind.
func moveReference(kind string, to, vm types.ManagedObjectReference, list func(mo.Entity) *[]types.ManagedObjectReference) {
	for _, e := range simulator.Map.All(kind) {
		if e.Reference() == to {
			simulator.Map.AddReference(e, list(e), vm)
		} else {
			simulator.Map.RemoveReference(e, list(e), vm)
		}
	}
}

// LabIPKey is the extraConfig key holding the IP address the guest OS is configured with
// (seeded by the lab, copied to recovered VMs by the lab's replication manager).
const LabIPKey = "guestinfo.lab.ip"

// bootIP gives a booting guest that has no address yet the one its OS is configured with
// (guestinfo.lab.ip). A guest that already has one keeps it: an address applied by
// CustomizeVM_Task at power-on, or one from an earlier boot (a reboot keeps it).
func bootIP(vm *simulator.VirtualMachine) {
	if vm.Guest == nil || vm.Guest.IpAddress != "" || vm.Config == nil {
		return
	}
	ip := ""
	for _, opt := range vm.Config.ExtraConfig {
		if val := opt.GetOptionValue(); val != nil && val.Key == LabIPKey {
			ip, _ = val.Value.(string)
		}
	}
	if ip == "" {
		return
	}
	changes := []types.PropertyChange{
		{Name: "guest.ipAddress", Val: ip},
		{Name: "summary.guest.ipAddress", Val: ip},
	}
	if len(vm.Guest.Net) > 0 {
		vm.Guest.Net[0].IpAddress = []string{ip}
		changes = append(changes, types.PropertyChange{Name: "guest.net", Val: vm.Guest.Net})
	}
	simulator.Map.Update(vm, changes)
}

func setGuest(vm *simulator.VirtualMachine, running bool) {
	if vm.Guest == nil {
		return
	}
	tools, toolsStatus, guestState, heartbeat := "guestToolsNotRunning", types.VirtualMachineToolsStatusToolsNotRunning, "notRunning", types.ManagedEntityStatusGray
	if running {
		tools, toolsStatus, guestState, heartbeat = "guestToolsRunning", types.VirtualMachineToolsStatusToolsOk, "running", types.ManagedEntityStatusGreen
	}
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: tools},
		{Name: "guest.toolsStatus", Val: toolsStatus},
		{Name: "guest.guestState", Val: guestState},
		{Name: "summary.quickStats.guestHeartbeatStatus", Val: heartbeat},
	})
}

// requireRESTLogin makes the vAPI login (POST /rest/com/vmware/cis/session) check the
// configured credentials; the vAPI simulator on its own accepts any non-empty pair.
func requireRESTLogin(mux *http.ServeMux, username, password string) {
	vapi, _ := mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/rest/"}})
	mux.HandleFunc("/rest/com/vmware/cis/session", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Query().Get("~action") == "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != username || p != password {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		vapi.ServeHTTP(w, r)
	})
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func writeReady(path string, data map[string]interface{}) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
