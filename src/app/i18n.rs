//! Every user-visible string of the window, in English and Simplified Chinese, in one table.
//!
//! Widget code never holds text: it asks `tr.get(T::Upload)`. Strings with values use `{}`
//! placeholders, filled in order by [`Tr::fill`]. Tests find widgets by these same labels.

use serde::{Deserialize, Serialize};

/// A language the window speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Lang {
    #[default]
    En,
    ZhCn,
}

impl Lang {
    /// The language for a system locale such as `zh-CN`, `zh_TW.UTF-8` or `en-US`.
    pub fn from_locale(locale: Option<&str>) -> Self {
        match locale {
            Some(l) if l.to_ascii_lowercase().starts_with("zh") => Lang::ZhCn,
            _ => Lang::En,
        }
    }

    /// The system's language, used on first start.
    pub fn from_system() -> Self {
        Self::from_locale(sys_locale::get_locale().as_deref())
    }

    /// The language's own name, shown in the switcher.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }
}

/// Translation lookups for one language.
#[derive(Debug, Clone, Copy)]
pub struct Tr(pub Lang);

impl Tr {
    pub fn get(self, text: T) -> &'static str {
        let (en, zh) = text.pair();
        match self.0 {
            Lang::En => en,
            Lang::ZhCn => zh,
        }
    }

    /// `get(text)` with each `{}` replaced by the next argument.
    pub fn fill(self, text: T, args: &[&dyn std::fmt::Display]) -> String {
        let mut out = String::new();
        let mut args = args.iter();
        let mut parts = self.get(text).split("{}").peekable();
        while let Some(part) = parts.next() {
            out.push_str(part);
            if parts.peek().is_some()
                && let Some(arg) = args.next()
            {
                out.push_str(&arg.to_string());
            }
        }
        out
    }
}

macro_rules! texts {
    ($($key:ident => $en:literal, $zh:literal;)*) => {
        /// The keys of the translation table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum T { $($key),* }

        impl T {
            /// Every key, so tests can check the table is complete.
            pub const ALL: &'static [T] = &[$(T::$key),*];

            fn pair(self) -> (&'static str, &'static str) {
                match self { $(T::$key => ($en, $zh)),* }
            }
        }
    };
}

texts! {
    AppTitle => "Ferry", "Ferry 摆渡";
    ServerTab => "Server", "接收";
    ClientTab => "Client", "发送";
    Notes => "Notes", "便签";
    Language => "Language", "语言";

    // Server tab
    BindAddress => "Bind address", "绑定地址";
    Port => "Port", "端口";
    StartListening => "Start listening", "开始监听";
    StopListening => "Stop listening", "停止监听";
    StopToChange => "Stop listening to change this: the server keeps it while it listens.", "停止监听后才能修改：监听期间沿用当前设置。";
    Starting => "Starting…", "正在启动…";
    ListeningOn => "Listening on {}", "正在监听 {}";
    PartialsExpired => "Removed {} unfinished upload(s) older than the age limit ({} bytes freed)", "已删除 {} 个超过保留期限的未完成上传（释放 {} 字节）";
    NotListening => "Not listening", "未监听";
    ListeningFromStart => "Ferry receives files while this window is open: others on your network can send to one of the addresses below. Stop listening to refuse everything.", "此窗口打开期间 Ferry 会接收文件：同一网络中的其他人可以发送到下面的地址之一。停止监听即可拒收一切。";
    ThisDevice => "This device", "本机";
    AcceptPolicy => "When files arrive", "收到文件时";
    Advanced => "Advanced", "高级";
    Open => "Open", "打开";
    CopyPath => "Copy path", "复制路径";
    ColMessage => "Message", "留言";
    DownloadFolder => "Download folder", "下载文件夹";
    ChooseFolder => "Choose folder…", "选择文件夹…";
    ReachableAt => "Reachable at", "可用地址";
    NoLanAddress => "no LAN address found", "未找到局域网地址";
    ClearFinished => "Clear finished", "清除已完成";
    NoIncoming => "No uploads yet. Senders connect to one of the addresses above.", "还没有收到文件。发送方请连接上面的地址之一。";
    OpenFolder => "Open folder", "打开文件夹";
    InvalidPort => "Port must be a number from 0 to 65535", "端口必须是 0 到 65535 之间的数字";
    InvalidBind => "Bind address must be an IP address such as 0.0.0.0", "绑定地址必须是 IP 地址，例如 0.0.0.0";
    IdleTimeout => "Idle timeout (seconds)", "空闲超时（秒）";
    DirectIo => "Write large files straight to the disk", "大文件直接写入磁盘";
    DirectIoHint => "A large file is written past the system's file cache (O_DIRECT) on local disks: less CPU, and other files stay cached. Turn it off if receiving is slower with it.", "在本地磁盘上，大文件绕过系统文件缓存（O_DIRECT）直接写入：占用更少 CPU，其他文件也能留在缓存中。若开启后接收变慢，请关闭。";
    InvalidIdleTimeout => "Idle timeout must be a whole number of seconds from 1 to 86400", "空闲超时必须是 1 到 86400 之间的整数秒";
    PolicyAsk => "Ask me", "询问我";
    PolicyTrusted => "Trusted devices without asking", "受信任设备无需询问";
    PolicyEveryone => "Everyone without asking", "所有人，无需询问";
    PolicyHint => "Plain (non-Ferry) senders can be neither asked nor encrypted: they are accepted (unverified) only under “Everyone without asking”, and refused otherwise.", "普通（非 Ferry）发送方既无法询问也无法加密：只有选择“所有人，无需询问”时才会接收其文件（不校验），否则拒收。";

    // This device, pairing and trusted devices (Server tab)
    Fingerprint => "Fingerprint", "指纹";
    RenameDevice => "Rename", "重命名";
    NewName => "New name", "新名称";
    Save => "Save", "保存";
    PairWithCode => "Pair with code", "用配对码配对";
    PairListenFirst => "Start listening to pair with a code.", "开始监听后才能用配对码配对。";
    PairingCode => "Pairing code", "配对码";
    PairingLeft => "expires in {} · {} tries left", "{} 后过期 · 还剩 {} 次尝试";
    PairingHint => "Type this code into the other Ferry's pairing code field (next to its destination), then send: both devices then trust each other.", "在另一台 Ferry 的配对码栏（目标地址旁）输入此码后发送：两台设备随即互相信任。";
    WithdrawCode => "Withdraw code", "撤销配对码";
    PairingBurnt => "The last code was burnt: its 3 tries were spent (a mistyped code, or someone on the network trying it). “Pair with code” makes a new one.", "上一个配对码已作废：3 次尝试已用完（输错了，或网络上有人在试）。点“用配对码配对”生成新码。";
    PairingExpired => "The last code expired (codes last 10 minutes). “Pair with code” makes a new one.", "上一个配对码已过期（配对码有效 10 分钟）。点“用配对码配对”生成新码。";
    PairedWith => "Paired with {} ({})", "已与 {} 配对（{}）";
    TrustedDevices => "Trusted devices", "受信任的设备";
    NoTrusted => "No trusted devices yet: pair with a code, or answer an offer with “Accept and trust”.", "还没有受信任的设备：请用配对码配对，或在收到文件时选择“接受并信任”。";
    ColLastAddress => "Last address", "最近地址";
    LastSeenAtIp => "last seen at {} (no port known)", "最近出现于 {}（端口未知）";
    SendFiles => "Send files", "发送文件";
    Forget => "Forget", "忘记";
    MinutesAgo => "{} min ago", "{} 分钟前";
    HoursAgo => "{} h ago", "{} 小时前";
    DaysAgo => "{} d ago", "{} 天前";
    KeyringError => "Devices: {}", "设备：{}";

    // Accept-or-decline prompt
    OfferTitle => "Incoming files", "收到文件";
    OfferFrom => "Offer {} from {}", "第 {} 号请求，来自 {}";
    OfferWithdrawn => "Offer {} from {} closed before it was answered: the sender left, or it waited too long", "第 {} 号请求（来自 {}）在答复前已关闭：发送方已离开，或等待时间过长";
    OfferCount => "Files: {}", "文件数：{}";
    OfferSize => "Total size: {}", "总大小：{}";
    OfferFolder => "{}: {} files in {} folders, {}", "{}：{} 个文件，{} 个文件夹，{}";
    OfferMessage => "Message: {}", "留言：{}";
    OfferMore => "{} more files are not listed: each will be asked about when it arrives", "另有 {} 个文件未列出：每个文件到达时会再次询问";
    OfferQueue => "{} more offers waiting", "另有 {} 个请求在等待";
    Accept => "Accept", "接受";
    AcceptAndTrust => "Accept and trust", "接受并信任";
    OfferFingerprint => "Fingerprint: {}", "指纹：{}";
    OfferUntrusted => "Not a trusted device yet: compare the fingerprint with the sender before “Accept and trust”.", "尚未受信任：选择“接受并信任”前，请与发送方核对指纹。";
    Decline => "Decline", "拒绝";

    // Table columns
    ColFile => "File", "文件";
    ColPeer => "Peer", "对方";
    ColSize => "Size", "大小";
    ColProgress => "Progress", "进度";
    EtaLeft => "{} left", "剩余 {}";
    ColState => "State", "状态";

    // States
    StateQueued => "queued", "排队中";
    StateReceiving => "receiving", "接收中";
    StateSending => "sending", "发送中";
    StateAwaiting => "waiting for the receiver to accept", "等待对方接受";
    StateAwaitingCheck => "waiting: the receiver checks what it kept of an earlier try", "等待：对方正在核对上次保留的部分";
    StateAwaitingEarlier => "waiting: the receiver is letting go of an interrupted copy of this folder", "等待：对方正在结束此文件夹上次中断的传输";
    StateVerified => "verified", "已校验";
    StateUnverified => "complete (not verified: plain peer)", "已完成（未校验：普通对方）";
    StateSentUnverified => "sent, unverified", "已发送，未校验";
    StateUnverifiedLocalSend => "complete, unverified (LocalSend sends no hash)", "已完成，未校验（LocalSend 不发送哈希值）";
    StateFailed => "failed: {}", "失败：{}";
    StateCancelled => "cancelled", "已取消";
    StateCancelledByPeer => "cancelled by peer", "对方已取消";
    StateDeclined => "declined: {}", "已拒绝：{}";
    FailRefused => "refused", "已拒收";
    FailRefusedPlain => "refused: plain senders cannot be asked (not encrypted); to take their files, set “When files arrive” to “Everyone without asking”", "已拒收：无法询问普通（非 Ferry）发送方（未加密）；如要接收，请把“收到文件时”设为“所有人，无需询问”";
    FailRefusedNotEncrypted => "refused: encryption is required and plain senders cannot encrypt", "已拒收：要求加密，而普通发送方无法加密";
    FailRefusedNotTrusted => "refused: only trusted devices are accepted (pair with a code first)", "已拒收：只接收受信任的设备（请先用配对码配对）";
    FailRefusedByUser => "refused: declined here", "已拒收：本机已拒绝";
    FailRefusedNoAnswer => "refused: nobody answered within {} s", "已拒收：{} 秒内无人答复";
    FailRefusedNoSpace => "refused: not enough disk space ({} needed, {} free)", "已拒收：磁盘空间不足（需要 {}，剩余 {}）";
    FailRefusedCannotCreate => "refused: the file cannot be created", "已拒收：无法创建文件";
    FailRefusedEagerUnasked => "refused: sent without waiting for an answer, and the receiver must ask about it first (not in the batch it accepted, or changed since); it is to be offered again", "已拒收：此文件未等答复就已发出，而接收方需要先询问（不在已接受的这批文件中，或之后有改动）；将重新发送";
    FailRefusedFolderBusy => "refused: this folder is being received on another connection right now; send it again once that ends", "已拒收：另一个连接正在接收这个文件夹，请在其结束后重新发送";
    FailInterrupted => "interrupted", "传输中断";
    FailInterruptedKept => "interrupted; {} kept, sending again resumes", "传输中断；已保留 {}，再次发送将续传";
    FailInterruptedNothing => "interrupted; nothing had arrived", "传输中断；尚未收到任何数据";
    FailNotVerified => "verification failed: the data does not match the sender's hash", "校验失败：数据与发送方的哈希不符";
    FailSenderGaveUp => "the sender gave up", "发送方已放弃";
    FailReceiverFailed => "the receiver could not keep it", "接收方无法保存";
    FailProtocol => "protocol error", "协议错误";
    FailLocalFile => "cannot read the file", "无法读取文件";
    FailDisk => "cannot write the file", "无法写入文件";
    FailUnreachable => "cannot connect", "无法连接";
    FailNoFerryAnswer => "no answer from a Ferry receiver (a plain server? use plain mode)", "没有 Ferry 接收方的答复（是普通服务器？请使用普通模式）";
    FailNotSent => "not sent", "未发送";
    FailNotStarted => "could not start", "无法开始";
    FailStopped => "the server stopped", "服务器已停止";
    FailSecurity => "security check failed", "安全检查失败";
    OnlyInterfaces => "Only these interfaces:", "仅用这些网络接口：";
    ApplyInterfaces => "Apply", "应用";
    OnlyInterfacesHint => "names separated by commas (lo for loopback); empty: every LAN interface. Nothing of discovery goes out on the others.", "名称用逗号分隔（lo 表示本机回环）；留空则用所有局域网接口。其他接口上不发出任何发现信息。";
    OnlyInterfacesFromRun => "set for this run by ferry --only-interface or FERRY_ONLY_INTERFACE", "本次运行由 ferry --only-interface 或 FERRY_ONLY_INTERFACE 设定";
    FailKeyChanged => "refused: not the trusted device of that name, it answered with another key (fingerprint {}); if that device was set up again, Forget it and pair again", "已拒绝：这不是该名称的受信任设备，它出示了另一把密钥（指纹 {}）；如果那台设备重新安装过，请先“忘记”它再重新配对";
    FailKeyLooksAlike => "refused: its name only looks like a trusted device's, and it answered with another key (fingerprint {}); if it is another device, give one of them a name of its own (Rename, on the Server tab)", "已拒绝：它的名称只是看起来像某台受信任设备的名称，且出示了另一把密钥（指纹 {}）；如果确实是另一台设备，请给其中一台改个名字（“接收”页上的“重命名”）";
    SavedAs => "saved as {}", "保存为 {}";

    // Client tab
    Destination => "Destination (host:port)", "目标（主机:端口）";
    Recent => "Recent", "最近";
    ChooseFiles => "Choose files…", "选择文件…";
    DropHint => "…or drop files or folders onto this window", "……或把文件、文件夹拖到此窗口";
    BrowserTitleSendFolder => "Choose a folder to send", "选择要发送的文件夹";
    FolderSize => "{} · {} files", "{} · {} 个文件";
    FolderSending => "sending: {} of {} files", "发送中：{}/{} 个文件";
    FolderReceiving => "receiving: {} files", "接收中：已收到 {} 个文件";
    FolderVerified => "all {} files verified", "全部 {} 个文件已校验";
    FolderFailed => "{} of {} files failed", "{}/{} 个文件失败";
    FolderSkipped => "skipped: {}", "已跳过：{}";
    ShowFiles => "Show files", "显示文件";
    HideFiles => "Hide files", "隐藏文件";
    FolderEmpty => "Nothing to send in {}: the folder has no files", "{} 中没有可发送的内容：该文件夹没有文件";
    FolderUnreadable => "Cannot read the folder {}", "无法读取文件夹 {}";
    Message => "Message", "留言";
    TestSpeed => "Test speed", "测速";
    SpeedRunning => "Testing the speed to {}…", "正在测试到 {} 的速度…";
    SpeedFailed => "Speed test with {} failed: {}", "与 {} 的测速失败：{}";
    SpeedResult => "Speed test with {} (nothing was saved there)", "与 {} 的测速（对方未保存任何文件）";
    SpeedNetwork => "network", "网络";
    SpeedReceiverDisk => "receiver's disk", "接收方磁盘";
    SpeedReceiverHash => "receiver's hashing", "接收方校验计算";
    SpeedSenderHash => "sender's hashing", "发送方校验计算";
    SpeedNotMeasured => "not measured", "未测量";
    SpeedLimit => "Limited by {}: a transfer can go at about {} MB/s", "瓶颈：{}；传输速度约为 {} MB/s";
    LimitNetwork => "the network", "网络";
    LimitReceiverDisk => "the receiver's disk", "接收方磁盘";
    LimitSenderCpu => "the sender's CPU", "发送方 CPU";
    LimitReceiverCpu => "the receiver's CPU", "接收方 CPU";
    ClientCode => "Pairing code (when the receiver shows one)", "配对码（接收方显示时填写）";
    BadCode => "Pairing code: {}", "配对码：{}";
    SendingToTrusted => "Sending to the trusted device {}: any other device at this address is refused.", "发送到受信任的设备 {}：此地址上的其他设备会被拒绝。";
    PlainPeer => "Plain peer (original protocol, no verification)", "普通对方（原始协议，不校验）";
    Upload => "Upload", "上传";
    Cancel => "Cancel", "取消";
    Remove => "Remove", "移除";
    Retry => "Retry", "重试";
    ClearQueue => "Clear finished", "清除已完成";
    EmptyQueue => "No files chosen yet.", "尚未选择文件。";
    NeedDestination => "Enter the receiver as host:port", "请输入接收方地址，格式为 主机:端口";
    DestNoHost => "\"{}\" has no host name: enter host:port", "“{}”缺少主机名：请输入 主机:端口";
    DestBadPort => "\"{}\" is not a port number: enter host:port, the port from 1 to 65535", "“{}”不是端口号：请输入 主机:端口，端口为 1 到 65535";
    DestBadHost => "\"{}\" is not a host name: enter host:port", "“{}”不是有效的主机名：请输入 主机:端口";
    DestShorthand => "\"{}\" is not an IPv4 address, and the system would read it as another one: enter four numbers from 0 to 255 with dots between (192.168.1.20) or a host name", "“{}”不是 IPv4 地址，系统会把它解析为另一个地址：请输入以点分隔的四个 0 到 255 的数字（如 192.168.1.20）或主机名";
    DestNoInterface => "\"{}\" is no network interface of this machine: enter [address%interface]:port with an interface's name or number", "“{}”不是本机的网络接口：请输入 [地址%接口]:端口，接口可写名称或编号";
    NothingToUpload => "Add files first", "请先添加文件";
    SkippedNotFiles => "{} item(s) left out: only files can be chosen here (use Choose folder… for a folder)", "已略过 {} 项：此处只能选择文件（文件夹请用“选择文件夹…”）";
    LocalSendNoMessage => "The message was not sent: LocalSend sends files without one. Send it as a note instead.", "留言未发送：LocalSend 发送文件时不带留言。请改为用便签发送。";
    LocalSendNoEmptyFolders => "Not sent: LocalSend cannot send empty folders: {}", "未发送：LocalSend 无法发送空文件夹：{}";
    DialogUnavailable => "No file dialog is available on this system; drop files onto the window instead.", "此系统没有可用的文件对话框；请把文件拖到窗口中。";

    // Devices (Client tab)
    Devices => "Devices", "设备";
    FindDevices => "Find devices on the LAN", "在局域网中查找设备";
    Refresh => "Refresh", "刷新";
    DiscoveryOff => "Devices are looked for while the server listens and this setting is on; typed addresses always work.", "服务器监听且此设置开启时才会查找设备；输入地址始终可用。";
    DiscoveryFailed => "Devices cannot be looked for: {}", "无法查找设备：{}";
    NoDevices => "No devices found yet (“Why can't I see my device?” below says why).", "尚未找到设备（下方“为什么看不到我的设备？”会说明原因）。";
    ColName => "Name", "名称";
    ColTrusted => "Trusted", "信任";
    ColAddress => "Address", "地址";
    ColHowFound => "How found", "发现方式";
    ColLastSeen => "Last seen", "最近出现";
    Trusted => "trusted", "已信任";
    NotTrusted => "not trusted", "未信任";
    DevReady => "ready", "就绪";
    DevChecking => "checking", "检查中";
    DevPortSilent => "seen, but port {} does not answer", "已发现，但端口 {} 无应答";
    DevStale => "not heard recently", "最近未出现";
    DevOffline => "offline", "离线";
    Favourite => "favourite", "收藏";
    AddedByAddress => "added by address", "按地址添加";
    // How a device was found (the engine's tags, in the Devices table's last column).
    HowBeacon => "beacon", "信标";
    HowMdns => "mdns", "mDNS";
    HowProbe => "probe", "探测";
    HowMulticast => "multicast", "组播";
    HowAnswer => "answer", "应答";
    HowRegister => "register", "注册";
    HowSweep => "sweep", "扫描";
    // A LocalSend device's kind, as it says it.
    KindMobile => "mobile", "手机";
    KindDesktop => "desktop", "电脑";
    KindWeb => "web", "网页";
    KindHeadless => "headless", "无界面";
    KindServer => "server", "服务器";
    SecondsAgo => "{} s ago", "{} 秒前";
    Never => "never", "从未";
    AddByAddress => "Add by address", "按地址添加";
    Add => "Add", "添加";
    InvalidHostPort => "Enter host:port, for example 192.168.1.20:8080", "请输入 主机:端口，例如 192.168.1.20:8080";
    CopyLink => "Copy link", "复制链接";
    NoLink => "start listening to get a link", "开始监听后即可获得链接";
    WhyNotSeen => "Why can't I see my device?", "为什么看不到我的设备？";
    DoctorIdle => "The report on the network interfaces appears while devices are looked for.", "查找设备时会在此显示网络接口报告。";
    CheckAddress => "Address to check (host:port)", "要检查的地址（主机:端口）";
    Check => "Check", "检查";
    Checking => "checking…", "正在检查…";

    // In-app picker (no system dialog)
    NoSystemDialog => "No system file dialog was found (XDG desktop portal or zenity), so Ferry offers its own. Files can also be dropped onto the window; installing zenity brings back the system dialog.", "未找到系统文件对话框（XDG 桌面门户或 zenity），因此使用 Ferry 自带的选择器。也可以把文件拖到窗口中；安装 zenity 即可恢复系统对话框。";
    BrowserTitleFiles => "Choose files", "选择文件";
    BrowserTitleFolder => "Choose a folder", "选择文件夹";
    BrowserUp => "Up", "上一级";
    BrowserPath => "Path", "路径";
    BrowserGo => "Go", "前往";
    BrowserMatches => "Matches:", "匹配：";
    BrowserEmpty => "This folder is empty.", "此文件夹为空。";
    BrowserTruncated => "Only the first {} entries are listed; type a path above.", "仅列出前 {} 项；请在上方输入路径。";
    BrowserSelected => "{} selected", "已选 {} 个";
    BrowserAdd => "Add selected", "添加所选";
    BrowserUseFolder => "Use this folder", "使用此文件夹";
    BrowserClose => "Close", "关闭";
    BrowserNoSuchPath => "No such file or folder: {}", "没有这个文件或文件夹：{}";
    BrowserReading => "Reading…", "正在读取…";
    BrowserBusy => "Too many folders are still being read (a slow or unresponsive disk?); wait, then try again.", "仍在读取的文件夹过多（磁盘缓慢或无响应？）；请稍候再试。";

    // Notes panel
    MyNotesPort => "My notes port", "我的便签端口";
    NotesListening => "listening on {}", "正在监听 {}";
    NotesNotListening => "not listening", "未监听";
    NotesStart => "Listen", "监听";
    InvalidNotesPort => "Notes port must be a number from 0 to 65535", "便签端口必须是 0 到 65535 之间的数字";
    PeerAddress => "Peer (host:port)", "对方（主机:端口）";
    NoteText => "Note", "便签内容";
    Send => "Send", "发送";
    NoteSent => "sent", "已发送";
    NoteHint => "Enter sends, Shift+Enter adds a line", "Enter 发送，Shift+Enter 换行";
    NoteTooLong => "{} bytes: too long for one UDP datagram (max {})", "{} 字节：超过单个 UDP 数据报上限（{}）";
    NoteLong => "{} bytes: plain peers that read 1024 bytes will cut it", "{} 字节：只读 1024 字节的普通对方会截断";
    NoteBytes => "{} bytes", "{} 字节";
    NoNotes => "No notes yet.", "还没有便签。";
    NotesDropped => "{} notes were dropped: they arrived faster than they could be shown.", "已丢弃 {} 条便签：到达速度超过了显示速度。";
    Reply => "Reply", "回复";
    DirIn => "from", "来自";
    DirOut => "to", "发往";
    NoteEncrypted => "encrypted · {}", "已加密 · {}";
    NoteNotEncrypted => "not encrypted", "未加密";
    NoteNotEncryptedHint => "A plain note: anyone on the network could have read it or sent it", "普通便签：网络上的任何人都可能读到或伪造它";
    NoteRefused => "Refused an encrypted note from {}: {}", "已拒绝来自 {} 的加密便签：{}";

    // Status bar
    StatusActive => "{} active", "{} 个进行中";
    StatusSpeed => "{}/s total", "总计 {}/s";

    // Top bar: appearance and notifications
    NotesUnseen => "Notes ({})", "便签（{}）";
    Theme => "Theme", "主题";
    ThemeSystem => "System", "跟随系统";
    ThemeLight => "Light", "浅色";
    ThemeDark => "Dark", "深色";
    NotifySetting => "Notify me", "桌面通知";
    NotifySettingHint => "A desktop notification when a sender waits for your answer, a file finishes or a note arrives while this window is in the background", "窗口在后台时，有人等待你答复、文件完成或收到便签会弹出桌面通知";
    NotifyOffer => "Waiting for your answer: {}", "等待你的答复：{}";
    NotifyReceived => "Received {}", "已收到 {}";
    NotifySent => "Sent {}", "已发送 {}";
    NotifyFailed => "{} failed", "{} 失败";
    NotifyDeclined => "{} was declined", "{} 被拒绝";
    NotifyFrom => "from {}", "来自 {}";
    NotifyTo => "to {}", "发往 {}";
    NotifyNote => "Note from {}", "来自 {} 的便签";

    // LocalSend
    ReceiveLocalSend => "Receive from LocalSend", "接收 LocalSend 发来的文件";
    LocalSendHint => "Phones and computers with the LocalSend app can send here too: same folder, same rules.", "装有 LocalSend 应用的手机和电脑也能发送到这里：同一文件夹，同样的规则。";
    LocalSendPort => "LocalSend port", "LocalSend 端口";
    InvalidLocalSendPort => "LocalSend port must be a number from 0 to 65535", "LocalSend 端口必须是 0 到 65535 之间的数字";
    LocalSendOn => "LocalSend receiving is on: {} (fingerprint {})", "LocalSend 接收已开启：{}（指纹 {}）";
    LocalSendOff => "LocalSend receiving is off", "LocalSend 接收已关闭";
    LocalSendFailed => "LocalSend receiving is off: {}", "LocalSend 接收已关闭：{}";
    LocalSendBadge => "LocalSend", "LocalSend";
    LocalSendMark => "LocalSend · {}", "LocalSend · {}";
    LocalSendMarkPlain => "LocalSend · {} · not encrypted", "LocalSend · {} · 未加密";
    LocalSendSendTo => "Send to the LocalSend device {} ({})", "发送到 LocalSend 设备 {}（{}）";
    LocalSendSendToPlain => "Send to the LocalSend device {} (encryption off: it claims the id {}, which no certificate proves)", "发送到 LocalSend 设备 {}（加密已关闭：它自称 ID 为 {}，没有证书能证明）";
    LocalSendPin => "LocalSend PIN", "LocalSend PIN 码";
    LocalSendPinHint => "Empty: no PIN. LocalSend senders must type it (3 wrong tries lock them out for 5 minutes).", "留空表示不需要 PIN 码。LocalSend 发送方必须输入它（输错 3 次将被锁定 5 分钟）。";
    LocalSendSweep => "Ask every LAN address for LocalSend devices", "向局域网内每个地址询问 LocalSend 设备";
    LocalSendPinRequired => "The LocalSend device asks for a PIN", "该 LocalSend 设备要求输入 PIN 码";
    LocalSendWrongPin => "The LocalSend device refused the PIN: try again", "该 LocalSend 设备拒绝了此 PIN 码：请重试";
    LocalSendTooManyPins => "Too many PIN attempts: the LocalSend device refuses for a while", "PIN 码尝试次数过多：该 LocalSend 设备暂时拒绝连接";
    LocalSendPinField => "PIN for the LocalSend device", "LocalSend 设备的 PIN 码";
    SendWithPin => "Send with PIN", "使用 PIN 码发送";
    NotePinField => "PIN for the note's LocalSend device", "便签的 LocalSend 设备 PIN 码";
    SendNoteWithPin => "Send note with PIN", "使用 PIN 码发送便签";
    LocalSendDeviceGone => "The LocalSend device {} is no longer listed", "LocalSend 设备 {} 已不在列表中";
    EncryptionOffBadge => "encryption off", "加密已关闭";
    EncryptionOffHint => "This LocalSend device has encryption turned off: it speaks plain HTTP, so anyone on the network could read what is sent to it, and it cannot prove who it is.", "此 LocalSend 设备已关闭加密：它使用明文 HTTP，网络上的任何人都能读取发送给它的内容，它也无法证明自己的身份。";
    EncryptionOffWarning => "{} has encryption turned off (plain HTTP): anyone on the network could read what you send, and it cannot prove who it is.", "{} 已关闭加密（明文 HTTP）：网络上的任何人都能读取你发送的内容，它也无法证明自己的身份。";
    SendUnencrypted => "Send unencrypted to this device", "以不加密方式发送到此设备";
    EncryptionOffNotSent => "Not sent: {} has encryption turned off. Tick “Send unencrypted to this device” to send anyway, or turn Encryption back on in its LocalSend settings.", "未发送：{} 已关闭加密。勾选“以不加密方式发送到此设备”仍可发送，或在其 LocalSend 设置中重新开启加密。";
    DoctorNoInterfaces => "no IPv4 interfaces at all", "完全没有 IPv4 网络接口";
    DoctorUsedNotHeard => "interface {} {}: used; our own beacon NOT heard back (multicast and broadcast blocked here?)", "接口 {} {}：已使用；本机自己的信标没有传回来（这里屏蔽了组播和广播？）";
    DoctorUsedHeard => "interface {} {}: used; our own beacon heard by {}", "接口 {} {}：已使用；本机自己的信标已经由{}传回";
    DoctorAnd => " and ", "和";
    DoctorIgnored => "interface {} {}: ignored: {}", "接口 {} {}：未使用：{}";
    IgnoredNotBound => "not the address the server is bound to", "不是服务器绑定的地址";
    IgnoredDown => "down", "未启用";
    IgnoredNotChosen => "not among the chosen interfaces", "不在所选接口之中";
    IgnoredLoopback => "loopback (this machine only)", "回环接口（仅限本机）";
    IgnoredPointToPoint => "point-to-point link (a VPN or modem: no neighbours to find)", "点对点链路（VPN 或调制解调器：没有可发现的邻居）";
    IgnoredVirtual => "virtual adapter (container, VM or VPN); choose it explicitly to use it", "虚拟网卡（容器、虚拟机或 VPN）；需明确选择才会使用";
    IgnoredLinkLocal => "link-local address without broadcast", "没有广播的链路本地地址";
    DoctorJoinFailed => "interface {}: {}", "接口 {}：{}";
    DoctorNoOthersHeard => "beacons from other devices in the last minute: none (is Ferry running there, on this network, with discovery on?)", "最近一分钟内其他设备的信标：无（对方是否在运行 Ferry、在同一网络上并开启了发现？）";
    DoctorOthersHeard => "beacons from other devices in the last minute:", "最近一分钟内其他设备的信标：";
    DoctorHeard => "  {}: {} by {}", "  {}：{} 个，经由{}";
    PathMulticast => "multicast", "组播";
    PathBroadcast => "broadcast", "广播";
    PathProbe => "unicast (probe)", "单播（探测）";
    PathMdns => "mDNS", "mDNS";
    PathUnicast => "unicast", "单播";
    DoctorNoSuchInterface => "interface {}: chosen, but this machine has no interface of that name with an IPv4 address (`ip link` lists the names)", "接口 {}：已选择，但本机没有该名称且带 IPv4 地址的接口（`ip link` 可列出接口名称）";
    DoctorIsolated => "no other device heard on {}, though our own beacon is: the network may isolate clients (Wi-Fi client/AP isolation, a guest network), or no other Ferry runs there with discovery on", "在 {} 上收到了本机自己的信标，却没有收到其他设备的：该网络可能隔离了客户端（Wi-Fi 客户端/AP 隔离、访客网络），或者那里没有其他开启了发现的 Ferry";
    DoctorInSubnet => "{}: in the subnet of {}", "{}：在 {} 的子网内";
    DoctorLoopback => "{}: this machine (loopback): only programs on this machine can use it", "{}：本机（回环）：只有本机上的程序能使用它";
    DoctorOtherNetwork => "{}: not in any of our subnets (another network: discovery cannot reach it; typed addresses still work if routed)", "{}：不在本机的任何子网内（另一个网络：发现无法到达；若有路由，手动输入地址仍可使用）";
    DoctorAnswers => "TCP {}: answers (ready to receive)", "TCP {}：有应答（可以接收）";
    DoctorRefused => "TCP {}: connection refused: the machine is there, but nothing listens on port {} (Ferry not running, or another port)", "TCP {}：连接被拒绝：该机器在线，但端口 {} 上没有程序监听（Ferry 未运行，或使用了其他端口）";
    DoctorTimedOut => "TCP {}: timed out: a firewall drops the connection, or the network isolates its clients (Wi-Fi client/AP isolation, guest network)", "TCP {}：超时：防火墙丢弃了连接，或者网络隔离了客户端（Wi-Fi 客户端/AP 隔离、访客网络）";
    DoctorConnectFailed => "TCP {}: failed: {}", "TCP {}：失败：{}";
    DoctorUfw => "  ufw:       sudo ufw allow {}/tcp && sudo ufw allow {}/udp", "  ufw 防火墙：sudo ufw allow {}/tcp && sudo ufw allow {}/udp";
    DoctorFirewalld => "  firewalld: sudo firewall-cmd --add-port={}/tcp --add-port={}/udp (add --permanent to keep it)", "  firewalld 防火墙：sudo firewall-cmd --add-port={}/tcp --add-port={}/udp（加上 --permanent 可永久保留）";
    DoctorCannotResolve => "cannot resolve {}: {}", "无法解析 {}：{}";
    DoctorNoIpv4 => "{} has no IPv4 address", "{} 没有 IPv4 地址";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_and_matching_placeholders() {
        for key in T::ALL {
            let (en, zh) = key.pair();
            assert!(!en.is_empty() && !zh.is_empty(), "{key:?}");
            assert_eq!(
                en.matches("{}").count(),
                zh.matches("{}").count(),
                "{key:?}"
            );
        }
    }

    #[test]
    fn fill_and_locale() {
        assert_eq!(
            Tr(Lang::En).fill(T::ListeningOn, &[&"0.0.0.0:8080"]),
            "Listening on 0.0.0.0:8080"
        );
        assert_eq!(Tr(Lang::ZhCn).fill(T::StateFailed, &[&"x"]), "失败：x");
        assert_eq!(Lang::from_locale(Some("zh-CN")), Lang::ZhCn);
        assert_eq!(Lang::from_locale(Some("zh_TW.UTF-8")), Lang::ZhCn);
        assert_eq!(Lang::from_locale(Some("en-US")), Lang::En);
        assert_eq!(Lang::from_locale(None), Lang::En);
    }
}
