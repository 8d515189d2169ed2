# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_polytropon_global_optspecs
    string join \n state-dir= data-dir= log= log-format= h/help V/version
end

function __fish_polytropon_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_polytropon_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_polytropon_using_subcommand
    set -l cmd (__fish_polytropon_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c polytropon -n "__fish_polytropon_needs_command" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_needs_command" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_needs_command" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_needs_command" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_needs_command" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "pool" -d 'Create, list and destroy pools (a tenant\'s slice of the host)'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "service" -d 'Run or stop a pool\'s filesystem service'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "mount" -d 'Serve a filesystem instance at MOUNTPOINT through FUSE (the legacy path)'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "umount" -d 'Unmount a filesystem instance mounted with `mount`'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "exec" -d 'Run a command in a pool: a container, or with `--preload-only` a host process with the preload library attached to the pool\'s service'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "kill" -d 'Send a signal to a running container (by default SIGTERM)'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "rm" -d 'Remove a container that has exited (with `--force`, kill it first), and its writable branch unless it was kept'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "image" -d 'Import, list and remove images (their layers become read-only branches)'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "bench" -d 'Measure the user-level path against FUSE and the kernel, side by side'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "inspect" -d 'Show pools, their live resource use, services, mounts and per-operation counters'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "man" -d 'Print the man page (or write every page to a directory with `--out`)'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "install-links" -d 'Create the links by which the binary serves mount(8) and umount(8): `mount.polytropon`, `mount.fuse.polytropon` and `umount.fuse.polytropon`'
complete -c polytropon -n "__fish_polytropon_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -f -a "create" -d 'Create pool NAME with a resource slice, from flags or a pool.yaml'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -f -a "list" -d 'List pools'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -f -a "destroy" -d 'Destroy pool NAME: stop its service and containers, unmount, remove its cgroups and namespace files'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and not __fish_seen_subcommand_from create list destroy help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -s f -l file -d 'Pool spec in YAML; flags given as well override its fields' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l cpus -d 'CPUs reserved for the pool, exclusively (e.g. `2-3,6`)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l mems -d 'Memory nodes (e.g. `0`)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l memory -d 'Hard memory limit (e.g. `2G`, `512M`)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l memory-high -d 'Memory throttling threshold (cgroup v2 `memory.high`)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l pids-max -d 'Maximum number of processes and threads' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l cpu-weight -d 'Relative CPU weight (1-10000)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l io-max -d 'I/O limits for one block device: `MAJ:MIN:rbps=..,wbps=..,riops=..,wiops=..` (or a device path instead of MAJ:MIN). Repeat for several devices' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l io-weight -d 'Relative I/O weight (1-10000)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l cgroup-parent -d 'Parent cgroup of the pool\'s cgroups (default: the cgroup this command runs in)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l uid-range -d 'Host uids and gids the pool\'s containers are mapped onto, `FIRST:COUNT` (or FIRST, 65536 ids); must not overlap another pool\'s (default: a free range from 2^30)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l storage -d 'Storage quota: bytes the pool\'s writable branches (its containers\' and mounts\' copy-on-write layers) may hold in all (e.g. `20G`); past it, ENOSPC' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l inodes -d 'Inode quota over the pool\'s writable branches; past it, ENOSPC' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l mem-bw -d 'Memory bandwidth cap, a percentage (1-100) of each memory domain\'s, through resctrl (Intel RDT MBA); refused, naming what is missing, where the host has none' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l net-rate -d 'A network of the pool\'s own for its containers (`exec --net pool`: one namespace wired to the host by a veth pair, 10.213.0.0/16), shaped to RATE both ways (e.g. `20mbit`, `1gbit`)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -l format -r -f -a "human\t'A table for people'
json\t'One JSON document, for scripts'"
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -l force -d 'Destroy even while containers run or mounts are busy'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from destroy" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create pool NAME with a resource slice, from flags or a pool.yaml'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "list" -d 'List pools'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "destroy" -d 'Destroy pool NAME: stop its service and containers, unmount, remove its cgroups and namespace files'
complete -c polytropon -n "__fish_polytropon_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -f -a "run" -d 'Run the filesystem service of a pool, inside the pool\'s cgroups and namespaces'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -f -a "stop" -d 'Flush, unmount and stop the service of a pool'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and not __fish_seen_subcommand_from run stop help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l pool -d 'The pool whose service this is' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -s f -l file -d 'Service spec in YAML: the filesystem instances to serve at start' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l metrics-listen -d 'Serve the pool\'s metrics (what `inspect --format openmetrics` prints for it) over HTTP at `http://ADDR/metrics`, for Prometheus to scrape; ADDR is an IP address and port (e.g. `127.0.0.1:9464`). Loopback addresses only, unless `--metrics-allow-remote` is given too' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l detach -d 'Return once the service is up, leaving it running in the background'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l restart -d 'Supervise the service: when it dies (killed, crashed), start it again, serving the mounts it served (gives up after 5 deaths within a minute)'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -l metrics-allow-remote -d 'Let `--metrics-listen` take an address other than loopback. The endpoint has no authentication: anyone who reaches it reads the pool\'s figures, mountpoints and container names'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -l pool -r
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from stop" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "run" -d 'Run the filesystem service of a pool, inside the pool\'s cgroups and namespaces'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Flush, unmount and stop the service of a pool'
complete -c polytropon -n "__fish_polytropon_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -s f -l file -d 'Filesystem instance spec in YAML' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l lower -d 'A read-only lower branch directory; repeat, topmost first' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l upper -d 'The writable upper branch directory' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l pool -d 'Add the instance to this pool\'s running service' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l backend -d 'Backend of the quick form: `local` directories, or `cephfs` (branch paths inside the CephFS of `--ceph-conf`)' -r -f -a "local\t''
cephfs\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l ceph-conf -d 'The CephFS\'s ceph.conf (for `mount`: with `--backend cephfs`)' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l ceph-id -d 'The CephFS client id (`admin` for client.admin)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l ceph-fs -d 'The CephFS file system (default: the cluster\'s default)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l cache -l cache-mode -d 'Cache mode (overrides the spec): `kernel` page cache, `direct` I/O, or `writethrough` (the pool\'s own cache in the service\'s memory)' -r -f -a "kernel\t'Kernel page cache with attribute/entry timeouts, and FUSE passthrough (or the writeback cache) for file data'
direct\t'Direct I/O: no kernel page cache; only the backend client caches'
writethrough\t'The pool\'s own cache: file data in the service\'s memory (a block cache of `size`, shared by the service\'s instances, keyed by backend file), written through to the backend; the FUSE path uses direct I/O so the kernel\'s page cache holds none of it (CephFS files only while Ceph delegates them to the service: nobody writes them)'
writeback\t'The pool\'s own cache as in `writethrough`, but writes stay in it, dirty, until the service\'s threads write them back (`dirty_ratio`, `dirty_expire`, `writeback_interval`; fsync writes a file back at once, and so does its last close unless `close_to_open` is off)'"
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l cache-size -d 'Size of the service\'s cache in `writethrough` mode (`256M`, `1G`, ...)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l timeout -d 'Attribute and entry timeout in seconds (overrides the spec)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l quota -d 'A storage quota for this mount\'s writable branch, `BYTES[,INODES]` (e.g. `2G` or `2G,100000`); past it, EDQUOT (the pool\'s own `--storage` still applies)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l fuse-transport -d 'How FUSE requests travel (overrides the spec\'s `fuse: {transport}`): `io_uring` where the host allows it (`auto`), always (`uring`: the mount fails when the host does not), or `/dev/fuse` reads and writes (`classic`)' -r -f -a "auto\t'io_uring where the host allows it (the fuse module\'s enable_uring is Y), else classic'
uring\t'io_uring, or the mount fails naming what is missing'
classic\t'/dev/fuse reads and writes'"
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l detach -d 'Run in the background; the daemon\'s pid is recorded under the state directory'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l no-passthrough -d 'In kernel cache mode, use the writeback cache instead of FUSE passthrough'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l user-passthrough -d 'In kernel cache mode, hand the preload library the backing file\'s descriptor of the writable branch\'s files it opens, so that their data calls are the kernel\'s'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l no-busy-passthrough -d 'Never hand the preload library the backing file\'s descriptor of a file it keeps writing (by default a file of the writable branch opened for writing gets it at its descriptor\'s fourth data call, in kernel cache mode with no storage quota)'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l no-close-to-open -d 'In `writeback` cache mode, declare the writable branch this mount\'s alone (nothing reads or writes it but through this service): a closed file\'s data then waits in the pool\'s cache for `dirty_expire` instead of being written back at its last close, and a file removed before then never reaches the disk (the spec\'s `close_to_open: false`)'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -l no-learn -d 'Let the preload library answer nothing from what it learned of files (every read, reopen and stat is a round trip to the service)'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand mount" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -l pool -d 'Remove the instance from this pool\'s service' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand umount" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l pool -d 'Pool to run in' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l root -d 'Root filesystem: a mountpoint of one of the pool\'s instances (`mount --pool`)' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l clone-of -d 'Root filesystem: a new clone of IMAGE (`image import`): a private writable branch over the image\'s shared read-only layers, removed with the container unless `--keep`. The image\'s Env, Entrypoint/Cmd, WorkingDir and User apply' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l in -d 'Run the command inside the running container NAME of the pool instead (its namespaces, root, cgroups, environment and user), as `docker exec` does; with `--tty`, an interactive shell in it' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l entrypoint -d 'Replace the image\'s Entrypoint (an empty string clears it). As with Docker, the command after `--` replaces the image\'s Cmd and follows its Entrypoint' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l name -d 'Container name, unique in the pool (default: generated)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l hostname -d 'Hostname inside the container (default: its name)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l env -d 'Environment variable for the command; repeat' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l workdir -d 'Working directory inside the container' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l user -d 'User (and group) to run as, numbers or names from the image\'s /etc/passwd' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l net -d 'Network: the host\'s, `none` (a namespace with loopback only) or `pool` (the pool\'s shaped network; the default, and the only way out, in a pool made with `--net-rate`)' -r -f -a "host\t'The host\'s network namespace'
none\t'A network namespace of its own with only loopback'
pool\t'The pool\'s network (`pool create --net-rate`): one namespace for the pool\'s containers, wired to the host and shaped'"
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l cap-add -d 'Add a capability to runc\'s default list the command keeps (a name from capabilities(7), with or without CAP_, or ALL); repeat' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l cap-drop -d 'Drop a capability from the list (ALL drops every one; `--cap-add` wins over it); repeat' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l seccomp -d 'The seccomp filter: `default` (Docker-like: mounts, kexec, modules, bpf, perf, the keyring, reboot, swap, clocks, namespaces... fail with EPERM) or `unconfined`' -r -f -a "default\t''
unconfined\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l userns -d 'User namespace: `pool` (its own, mapped onto the pool\'s host id range; the default for --clone-of) or `host` (container root is host root; the default for --root)' -r -f -a "pool\t'One of its own, mapped onto the pool\'s host id range: its root is an unprivileged host user (the default for clones)'
host\t'The host\'s: container root is host root (the default for `--root` mounts, whose files keep host ids)'"
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l preload-only -d 'Run a host process inside the pool (its cgroups, IPC namespace and cpus; no other namespaces) with the preload library attached and the user-level path configured (POLYTROPON_SHMID, POLYTROPON_MOUNTS)'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l unmanaged-root -d '`--root` is a mount that is not the pool\'s (kernel overlayfs, fuse-overlayfs): the container runs on it without the user-level path. For `bench --workload startup`'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l keep -d 'Keep a clone\'s writable branch after the container ends'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l tty -d 'Give the command a pseudo-terminal (an interactive shell: `--tty -- /bin/sh`)'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l allow-new-privs -d 'Let the command gain privileges at exec (set-id binaries, file capabilities): turns `no_new_privs` off'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -l detach -d 'Return at once, printing the container\'s name; it shows in `inspect`, its output goes to a log under the state directory, and `kill` stops it'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand exec" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -l pool -r
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -s s -l signal -d 'Signal name or number (TERM, SIGKILL, 9...)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand kill" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -l pool -r
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -l force -d 'Kill it first if it runs'
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand rm" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -f -a "import" -d 'Import an image from an OCI image layout directory, or an OCI or `docker save` tar archive (optionally gzip-compressed). Each layer is unpacked once into the store'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -f -a "list" -d 'List imported images'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -f -a "remove" -d 'Remove an image, and its layers no other image uses'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and not __fish_seen_subcommand_from import list remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l name -d 'Name to give the image (default: the name it carries)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l ceph-conf -d 'The CephFS\'s ceph.conf (for `mount`: with `--backend cephfs`)' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l ceph-id -d 'The CephFS client id (`admin` for client.admin)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l ceph-fs -d 'The CephFS file system (default: the cluster\'s default)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l ceph-dir -d 'With `--ceph-conf`: the directory of the image store inside the CephFS' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -l format -r -f -a "human\t'A table for people'
json\t'One JSON document, for scripts'"
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from remove" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from remove" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from remove" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from remove" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "import" -d 'Import an image from an OCI image layout directory, or an OCI or `docker save` tar archive (optionally gzip-compressed). Each layer is unpacked once into the store'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "list" -d 'List imported images'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove an image, and its layers no other image uses'
complete -c polytropon -n "__fish_polytropon_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l workload -d 'Workload to run; repeat for several (default: all): `micro` (stat, open+close, create+unlink, 4 KiB pread, 1 MiB sequential write and read), `metadata` (stat, open+close, create+unlink, readdir), `seqwrite`, `seqread`, `fileappend` and `fileread` (`--containers` clones at once append to their copy of / read a large lower file), `fileserver` and `webserver` (Filebench\'s mixes), `scaling` (the fileserver mix in each of `--containers` clones at once, one point per number), `rocksdb` (db_bench, when installed), `startup` (N clones of `--image` to their first HTTP answer; with `--ceph-conf`, also of the host\'s busybox image stored in CephFS: `cephfs-user` against `unionfs-ceph-fuse`) and `isolation` (`--victim` in pool A alone, then beside a noisy neighbour in pool B)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l paths -d 'Paths to compare, comma-separated (default: every available one): `user` (the user-level path: the workload under the preload library), `user-passthrough` (the same with `--user-passthrough`: the library gets the backing file\'s descriptor of every file of the writable branch it opens), `user-cache` (the same with the pool\'s own write-back cache, `--cache writeback`), `fuse` (ours, kernel cache with passthrough), `fuse-writeback` (ours, kernel cache with the writeback cache instead of passthrough), `fuse-direct` (ours, direct I/O), `fuse-overlayfs`, `unionfs-fuse`, `overlay` (kernel overlayfs), `kernel` (a plain directory); with `--ceph-conf`: `cephfs-user`, `cephfs-fuse`, `ceph-fuse`, `unionfs-ceph-fuse`' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l operations -d 'Operations of `micro` and `metadata` to run, comma-separated (default: all): `stat`, `open+close`, `create+unlink`, `readdir`, `pread 4KiB`, `pwrite 4KiB`, `seq write 1MiB`, `seq read 1MiB`' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l reps -d 'Interleaved repetitions per path; medians are over these' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l ops -d 'Operations per repetition of `micro` and `metadata` (`rocksdb`: twice as many keys)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l loops -d 'Loops per thread of `fileserver` and `webserver`' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l min-time -d 'Seconds each repetition\'s measured loop runs at least, past `--ops`, `--loops` and the stream sizes, so that it measures the path\'s steady state (a warm-up is timed apart as `first op`); 0: the counts alone' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l file-mib -d 'Size of the large file and of the sequential streams, in MiB' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l threads -d 'Threads per container of every file workload, each doing the workload\'s work at once on files of its own (default: 4 for `fileserver` and `webserver`, 1 for the others)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l files -d 'Files in the `fileserver` and `webserver` sets' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l file-kib -d 'Mean size of a `fileserver` file in KiB (`webserver` files: a quarter)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l containers -d 'Cloned containers running at once: of `fileappend` and `fileread` (the largest number given; default 4), and of each point of `scaling` (comma-separated; default 1,2,4,8,16)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l append-mib -d 'MiB each `fileappend` container appends' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l victim -d '`isolation`: the workload of pool A' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l pool-a-cpus -d '`isolation`: pool A\'s cpus (default: the first half of the cpus bench may use)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l pool-b-cpus -d '`isolation`: pool B\'s (the neighbour\'s) cpus (default: the second half)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l noise-mib -d '`isolation`: size of each of the neighbour\'s files, in MiB' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l neighbour-io-max -d '`isolation`: also run the workload beside the neighbour in a pool B with this storage bandwidth limit (as `pool create --io-max`, e.g. `/dev/vda:wbps=20M`; repeatable), and report its drop apart ("sliced neighbour")' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l neighbour-io-weight -d '`isolation`: as `--neighbour-io-max`, with this storage weight for the neighbour\'s pool (as `pool create --io-weight`; needs BFQ on cgroup v1)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l warmup-ms -d '`isolation`: how long the neighbour runs before the workload starts, in ms' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l dir -d 'Directory for the branches and mounts (default: the temp dir)' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l cpus -d 'Run everything (workloads, back driver, FUSE threads) on these cpus only (e.g. `0`: a one-cpu pool, where client and service share the cpu)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l ceph-conf -d 'A CephFS (its ceph.conf; client.admin) for the paths `cephfs-user`, `cephfs-fuse`, `ceph-fuse` and `unionfs-ceph-fuse`; their data goes under /polytropon-bench-PID' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l image -d '`startup`: the imported image whose clones start (it must hold the server; default: one made for the run of the host\'s static busybox)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l serve -d '`startup`: the server each clone runs; `{port}` becomes its port on the host network' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l clones -d '`startup`: numbers of clones to start at once, comma-separated (the papers went to 64)' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l format -r -f -a "human\t'A table for people'
json\t'One JSON document, for scripts'"
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l json -d 'Also write the report as JSON into this file' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l plot -d 'Draw the comparison into an SVG file' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -l all -d 'Run every workload'
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand bench" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l pool -d 'Only this pool' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l format -r -f -a "human\t'A table for people'
json\t'One JSON document, for scripts'
openmetrics\t'Every figure as metrics in the OpenMetrics text format (what `service run --metrics-listen` serves over HTTP)'
prometheus\t'The same metrics in the Prometheus text format 0.0.4 (for node_exporter\'s textfile collector, which reads only that)'"
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l watch -d 'Refresh every SECS seconds until interrupted' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand completions" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand completions" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand completions" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand completions" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand completions" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -l out -d 'Write one page per command into this directory instead of printing the main page' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -s h -l help -d 'Print help'
complete -c polytropon -n "__fish_polytropon_using_subcommand man" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -l state-dir -d 'Directory holding pool state: specs, service pids, filesystem tables, mounts' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -l data-dir -d 'Directory holding data that outlives a boot: imported images (unpacked layers) and clone containers\' writable branches' -r -F
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -l log -d 'Log verbosity (error, warn, info, debug, trace) or a tracing filter directive' -r
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -l force -d 'Replace files of those names that are not links to this binary'
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -l remove -d 'Remove the links (only those that point to this binary) instead'
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c polytropon -n "__fish_polytropon_using_subcommand install-links" -s V -l version -d 'Print version'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "pool" -d 'Create, list and destroy pools (a tenant\'s slice of the host)'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "service" -d 'Run or stop a pool\'s filesystem service'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "mount" -d 'Serve a filesystem instance at MOUNTPOINT through FUSE (the legacy path)'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "umount" -d 'Unmount a filesystem instance mounted with `mount`'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "exec" -d 'Run a command in a pool: a container, or with `--preload-only` a host process with the preload library attached to the pool\'s service'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "kill" -d 'Send a signal to a running container (by default SIGTERM)'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "rm" -d 'Remove a container that has exited (with `--force`, kill it first), and its writable branch unless it was kept'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "image" -d 'Import, list and remove images (their layers become read-only branches)'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "bench" -d 'Measure the user-level path against FUSE and the kernel, side by side'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "inspect" -d 'Show pools, their live resource use, services, mounts and per-operation counters'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "man" -d 'Print the man page (or write every page to a directory with `--out`)'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "install-links" -d 'Create the links by which the binary serves mount(8) and umount(8): `mount.polytropon`, `mount.fuse.polytropon` and `umount.fuse.polytropon`'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and not __fish_seen_subcommand_from pool service mount umount exec kill rm image bench inspect completions man install-links help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "create" -d 'Create pool NAME with a resource slice, from flags or a pool.yaml'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "list" -d 'List pools'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "destroy" -d 'Destroy pool NAME: stop its service and containers, unmount, remove its cgroups and namespace files'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "run" -d 'Run the filesystem service of a pool, inside the pool\'s cgroups and namespaces'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "stop" -d 'Flush, unmount and stop the service of a pool'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "import" -d 'Import an image from an OCI image layout directory, or an OCI or `docker save` tar archive (optionally gzip-compressed). Each layer is unpacked once into the store'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "list" -d 'List imported images'
complete -c polytropon -n "__fish_polytropon_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "remove" -d 'Remove an image, and its layers no other image uses'
