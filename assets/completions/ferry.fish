# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ferry_global_optspecs
    string join \n interface= only-interface= h/help V/version
end

function __fish_ferry_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ferry_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ferry_using_subcommand
    set -l cmd (__fish_ferry_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ferry -n "__fish_ferry_needs_command" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_needs_command" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ferry -n "__fish_ferry_needs_command" -s V -l version -d 'Print version'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "serve" -d 'Receive uploads (plain and Ferry peers) into a folder'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "send" -d 'Upload files to a server over one connection'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "note" -d 'Send one UDP note, optionally waiting for a reply'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "listen" -d 'Print every UDP note received'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "chat" -d 'Interactive notes: each stdin line is sent; received notes are printed'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "manpage" -d 'Print the man page (roff)'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "peers" -d 'Trusted devices; with --wait, the devices found on the LAN'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "doctor" -d 'Why a device is not found: interfaces, beacons heard, and a typed address checked'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "bench" -d 'Speed test with a Ferry receiver: the network, its disk and both sides\' hashing, and which of them limits a real transfer. Nothing is saved on the receiver'
complete -c ferry -n "__fish_ferry_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l bind -d 'Address to listen on' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l port -d 'TCP port (0 picks a free one and prints it)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l dir -d 'Download folder (created if missing) [default: ~/Downloads/Ferry, the window\'s folder]' -r -F
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l max-connections -d 'Connections served at once; more are refused with a message' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l idle-timeout-secs -d 'Drop a peer that stays silent this long' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l max-per-peer -d 'Connections one address may hold at once (so a few peers cannot take every slot)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l max-files-per-connection -d 'Files one connection may send; more end the connection' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l pair-secs -d 'With --pair: the code lasts SECS instead of 10 minutes (for tests)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l partial-max-age-days -d 'Remove kept partial files (`*.ferry.part`) older than this many days, at start and hourly' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l name -d 'This server\'s name: announced on the LAN, to LocalSend apps, and told to Ferry senders [default: the device name, normally the host name]' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l localsend-port -d 'TCP port for LocalSend receiving (LocalSend\'s default; 0 picks a free one)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l localsend-pin -d 'A PIN LocalSend senders must type (3 wrong tries lock an address out for 5 minutes)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l localsend-sweep-host -d 'Sweep these addresses instead of the LAN\'s /24s (repeatable; for tests)' -r
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l ask -d 'Ask on the terminal before accepting an upload: each prompt shows its sender and number N, answered with "y N" or "n N" ("more N" pages through a long list). Plain senders cannot be asked and are refused; without --ask every upload is accepted, like the original'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l trusted-only -d 'Accept only trusted devices (paired with a code); every other offer is refused. With --ask, trusted devices are accepted without asking and the others are asked'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l require-encryption -d 'Refuse plain (original-protocol) senders: they cannot encrypt'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l pair -d 'Show a pairing code (line "pairing code: CODE"): a sender that types it (`ferry send --code CODE`) and this device trust each other from then on. The code lasts 10 minutes and 3 tries'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l no-fsync -d 'Do not sync received files to disk before reporting them (for benchmarks only: a power cut may then lose files both sides were told are safe)'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l no-direct-io -d 'Write every received file through the page cache. By default a large file (4 MiB and up) that will be synced goes straight to the disk (O_DIRECT) where the file system is a local one known to take that well (ext4, XFS, Btrfs, F2FS, FAT, ...); use this where that turns out slower'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l no-discovery -d 'Do not announce on the LAN (typed addresses keep working)'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l no-localsend -d 'Do not receive from LocalSend apps (HTTPS on --localsend-port, announced on LocalSend\'s multicast group unless --no-discovery)'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -l no-localsend-sweep -d 'Do not ask every host of this machine\'s private /24s whether it is a LocalSend device (`POST /register` on port 53317: a running LocalSend CLI is found no other way)'
complete -c ferry -n "__fish_ferry_using_subcommand serve" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand send" -l to -d 'Receiver as HOST:PORT (HOST alone: port 8080), or the name of a device found on the LAN or trusted; a name no Ferry device has is looked for among LocalSend devices' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l msg -d 'Message attached to every file (the header\'s `msg`) and to every folder (its offer\'s `msg`: the receiver shows it once for the whole folder)' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l code -d 'The pairing code the receiver shows (`ferry serve --pair`): pairs the two devices, so they trust each other from then on' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l pin -d 'The PIN a LocalSend device asks for (sending to a LocalSend device; a note goes as its text message)' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l localsend-probe -d 'Also ask this address whether it is a LocalSend device (`POST /register`), for one that LocalSend\'s multicast does not reach (repeatable; port 53317 unless given)' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l localsend-wait -d 'How long to look for a LocalSend device named by --to' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l localsend-fingerprint -d 'The LocalSend device named by --to whose fingerprint (as `ferry peers` shows it; for one with encryption off, the id it claims) begins with this (at least 8 characters, any case): needed when several devices take that name' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l localsend-sweep-host -d 'Sweep these addresses instead of the LAN\'s /24s (repeatable; for tests)' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_using_subcommand send" -l plain -d 'Speak the original protocol to a plain (non-Ferry) server: nothing is verified or encrypted'
complete -c ferry -n "__fish_ferry_using_subcommand send" -l no-encryption -d 'Send without encryption (still verified): for a receiver that cannot encrypt, and for benchmarks. Anyone on the network can then read the files. To a LocalSend device with encryption turned off (plain HTTP) it is the agreement to send unencrypted; a LocalSend device with encryption on still gets HTTPS'
complete -c ferry -n "__fish_ferry_using_subcommand send" -l no-localsend-sweep -d 'Do not ask every host of this machine\'s private /24s whether it is a LocalSend device (`POST /register` on port 53317: a running LocalSend CLI is found no other way)'
complete -c ferry -n "__fish_ferry_using_subcommand send" -l flatten -d 'With --plain: send the files of each folder named, with their paths relative to the folder\'s parent (`photos/2024/a.jpg`) as names (plain receivers have no folders)'
complete -c ferry -n "__fish_ferry_using_subcommand send" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand note" -l to -d 'Peer as HOST:PORT (HOST alone: port 8080), or a trusted device\'s NAME (sent encrypted to its last address). A HOST:PORT that is a trusted device\'s last address is encrypted too. Another name is looked for among LocalSend devices (the note goes as its text message)' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l wait -d 'Wait up to SECS for a reply and print it; exit 1 if none came' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l pin -d 'The PIN a LocalSend device asks for (sending to a LocalSend device; a note goes as its text message)' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l localsend-probe -d 'Also ask this address whether it is a LocalSend device (`POST /register`), for one that LocalSend\'s multicast does not reach (repeatable; port 53317 unless given)' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l localsend-wait -d 'How long to look for a LocalSend device named by --to' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l localsend-fingerprint -d 'The LocalSend device named by --to whose fingerprint (as `ferry peers` shows it; for one with encryption off, the id it claims) begins with this (at least 8 characters, any case): needed when several devices take that name' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l localsend-sweep-host -d 'Sweep these addresses instead of the LAN\'s /24s (repeatable; for tests)' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_using_subcommand note" -l plain -d 'Send plain text even to a trusted device (for plain peers: nc -u, the Python chat). To a LocalSend device with encryption turned off (plain HTTP) it is the agreement to send the note unencrypted; a LocalSend device with encryption on still gets HTTPS'
complete -c ferry -n "__fish_ferry_using_subcommand note" -l no-localsend-sweep -d 'Do not ask every host of this machine\'s private /24s whether it is a LocalSend device (`POST /register` on port 53317: a running LocalSend CLI is found no other way)'
complete -c ferry -n "__fish_ferry_using_subcommand note" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand listen" -l port -d 'UDP port to listen on' -r
complete -c ferry -n "__fish_ferry_using_subcommand listen" -l bind -d 'Address to listen on' -r
complete -c ferry -n "__fish_ferry_using_subcommand listen" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand chat" -l to -d 'Peer as HOST:PORT (HOST alone: port 8080), or a trusted device\'s NAME (encrypted)' -r
complete -c ferry -n "__fish_ferry_using_subcommand chat" -l port -d 'Local UDP port to listen on (0 picks a free one)' -r
complete -c ferry -n "__fish_ferry_using_subcommand chat" -l bind -d 'Address to listen on' -r
complete -c ferry -n "__fish_ferry_using_subcommand chat" -l plain -d 'Send plain text even to a trusted device'
complete -c ferry -n "__fish_ferry_using_subcommand chat" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ferry -n "__fish_ferry_using_subcommand manpage" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l wait -d 'Look for devices on the LAN for SECS seconds, then print one line per device: name, ADDRESS:PORT, trusted or not, how found, state' -r
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l probe -d 'With --wait: also ask this address for its Ferry beacon by unicast (repeatable), for a network that drops multicast and broadcast; asked, and its answer heard, even through an interface --only-interface leaves out, as a typed address would be' -r
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l localsend-probe -d 'With --wait: also ask this address whether it is a LocalSend device (`POST /register`; repeatable; port 53317 unless given)' -r
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l localsend-sweep-host -d 'Sweep these addresses instead of the LAN\'s /24s (repeatable; for tests)' -r
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -l no-localsend-sweep -d 'Do not ask every host of this machine\'s private /24s whether it is a LocalSend device (`POST /register` on port 53317: a running LocalSend CLI is found no other way)'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -f -a "forget" -d 'Forget a trusted device: it needs a pairing code (or a prompt) again'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and not __fish_seen_subcommand_from forget help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Forget a trusted device: it needs a pairing code (or a prompt) again'
complete -c ferry -n "__fish_ferry_using_subcommand peers; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ferry -n "__fish_ferry_using_subcommand doctor" -l wait -d 'Listen for beacons this many seconds first' -r
complete -c ferry -n "__fish_ferry_using_subcommand doctor" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_using_subcommand doctor" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand bench" -l to -d 'Receiver as HOST:PORT (HOST alone: port 8080), or a device\'s name' -r
complete -c ferry -n "__fish_ferry_using_subcommand bench" -l secs -d 'How long to send throwaway bytes, from 0.5 to 60 seconds' -r
complete -c ferry -n "__fish_ferry_using_subcommand bench" -l interface -d 'Also use this interface, even if it looks virtual (repeatable; "lo" for loopback)' -r
complete -c ferry -n "__fish_ferry_using_subcommand bench" -l only-interface -d 'Use only this interface to announce this device and look for others (repeatable, or names separated by commas; "lo" for loopback; also read from FERRY_ONLY_INTERFACE): nothing of discovery goes out on another, LocalSend\'s multicast and sweep included, and what is announced there is not heard. Typed addresses work everywhere' -r
complete -c ferry -n "__fish_ferry_using_subcommand bench" -l no-encryption -d 'Test without encryption'
complete -c ferry -n "__fish_ferry_using_subcommand bench" -s h -l help -d 'Print help'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "serve" -d 'Receive uploads (plain and Ferry peers) into a folder'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "send" -d 'Upload files to a server over one connection'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "note" -d 'Send one UDP note, optionally waiting for a reply'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "listen" -d 'Print every UDP note received'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "chat" -d 'Interactive notes: each stdin line is sent; received notes are printed'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "completions" -d 'Print a shell completion script'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "manpage" -d 'Print the man page (roff)'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "peers" -d 'Trusted devices; with --wait, the devices found on the LAN'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "doctor" -d 'Why a device is not found: interfaces, beacons heard, and a typed address checked'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "bench" -d 'Speed test with a Ferry receiver: the network, its disk and both sides\' hashing, and which of them limits a real transfer. Nothing is saved on the receiver'
complete -c ferry -n "__fish_ferry_using_subcommand help; and not __fish_seen_subcommand_from serve send note listen chat completions manpage peers doctor bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ferry -n "__fish_ferry_using_subcommand help; and __fish_seen_subcommand_from peers" -f -a "forget" -d 'Forget a trusted device: it needs a pairing code (or a prompt) again'
