import CarbonStore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A fault to inject into the writes of the `path:` backend: a crash of the process at a named step
/// of a write, or one failing system call. Part of the test support only: the shipped library and
/// binary cannot inject faults. See docs/RELIABILITY.md.
///
/// Written as a spec string, as in `CARBONSTORE_TEST_FILE_FAULT`:
///
/// ```
/// crash:STEP[@N]        e.g. crash:after-rename, crash:after-temp-fsync@2, crash:mid-append-write
/// fail:CALL:ERRNO[@N]   e.g. fail:fsync:EIO, fail:short-write:ENOSPC, fail:datasync:EIO@3
/// ```
///
/// The steps and calls of a snapshot write (temporary file, rename, directory fsync: a user's first
/// write, a compaction, the upgrade of a version-1 file) and those of an append (a change frame
/// appended to a version-2 file under the commit lock) are told apart: `fail:write:EIO` fails only
/// writes to temporary files, `fail:append-write:EIO` only appends.
///
/// `@N` (default 1) makes the fault hit the Nth occurrence of its step or call in the process, so it
/// can hit a later write. A fault fires once.
public struct FileFault: Sendable, Hashable, CustomStringConvertible {
    /// The status a process exits with when a crash fault fires (`_exit`, no cleanup of any kind).
    public static let crashExitStatus: Int32 = 86

    /// Where a crash fault stops a write. Temporary files are the `.tmp-…` files of `PathStorage`.
    public enum Step: String, Sendable, Hashable, CaseIterable {
        /// After the last write to the temporary file, before its fsync.
        case afterTempWrite = "after-temp-write"
        /// After the temporary file's fsync returned, before it is closed.
        case afterTempFsync = "after-temp-fsync"
        /// After the temporary file was closed, before the commit lock and the rename.
        case afterTempClose = "after-temp-close"
        /// After the rename over the user file, before the directory is opened for its fsync.
        case afterRename = "after-rename"
        /// After the rename (or unlink) and the directory's open, right before the directory fsync.
        case beforeDirectoryFsync = "before-directory-fsync"
        /// After the directory fsync returned, before the write reports success.
        case afterDirectoryFsync = "after-directory-fsync"
        /// After the unlink of a user file (a delete), before the directory fsync.
        case afterUnlink = "after-unlink"
        /// After a write created a missing folder, before the folder's entry is made durable (its
        /// parent fsynced): the folder exists, but a power cut could lose it.
        case afterMkdir = "after-mkdir"
        /// Before the fsync that makes a folder's entry durable in its parent (a folder that this
        /// writer created, or found and has not yet made durable).
        case beforeParentFsync = "before-parent-fsync"
        /// After that fsync returned.
        case afterParentFsync = "after-parent-fsync"
        /// After an append cut a torn append that a crashed writer left (its `ftruncate` returned),
        /// before the frame is written.
        case afterTruncate = "after-truncate"
        /// After an append that did not fit in the file reserved room for it and the next ones (zero
        /// bytes after the content), before the frame is written.
        case afterReserveWrite = "after-reserve-write"
        /// Under the commit lock, the fence checked, before the first byte of the frame is written.
        case beforeAppendWrite = "before-append-write"
        /// A torn append: the first half of the frame is written, then the crash.
        case midAppendWrite = "mid-append-write"
        /// The whole frame written, before its `fdatasync`.
        case afterAppendWrite = "after-append-write"
        /// After the frame's `fdatasync` returned, before the append reports success.
        case afterAppendDatasync = "after-append-datasync"
    }

    /// A system call a fail fault makes fail.
    public enum Call: String, Sendable, Hashable, CaseIterable {
        /// The creating open of a temporary file.
        case create
        /// A write to a temporary file: fails without writing anything.
        case write
        /// A write to a temporary file that writes only half of what it was given (a short write);
        /// the next write to that file then fails with the errno, as on a file system filling up.
        case shortWrite = "short-write"
        /// The fsync of a temporary file.
        case fsync
        /// The close of a temporary file (the descriptor is released, as on Linux, then the error).
        case close
        /// The rename of a temporary file over the user file (nothing is renamed).
        case rename
        /// The open of a folder on the way to the user file, by a write or a delete.
        case directoryOpen = "directory-open"
        /// The creation of a missing folder by a write.
        case mkdir
        /// The fsync of a folder's parent that makes the folder's entry durable.
        case parentFsync = "parent-fsync"
        /// The fsync of the directory after a rename or unlink (the rename or unlink has happened).
        case directoryFsync = "directory-fsync"
        /// The unlink of a user file (a delete). The removal of temporary files is never failed.
        case unlink
        /// The open of a user file for appending (read and write, not created).
        case appendOpen = "append-open"
        /// The write of the zero bytes an append reserves after the content when its frame does not
        /// fit in the file: fails without writing anything.
        case reserveWrite = "reserve-write"
        /// The same write, failing after half of the zero bytes were written (a disk filling up).
        case shortReserveWrite = "short-reserve-write"
        /// A write of a change frame to a user file: fails without writing anything.
        case appendWrite = "append-write"
        /// A write of a change frame that writes only half of what it was given (a short write);
        /// the next write to that file then fails with the errno.
        case shortAppendWrite = "short-append-write"
        /// The `fdatasync` of a user file after an append (the frame has been written).
        case datasync
        /// The `ftruncate` that cuts a torn append before the next append.
        case truncate
        /// The `fdatasync` that makes that cut durable, before the frame is written.
        case cutDatasync = "cut-datasync"
    }

    public enum Action: Sendable, Hashable {
        case crash(Step)
        case fail(Call, errno: Int32)
    }

    public var action: Action
    /// Which occurrence of the step or call the fault hits, from 1.
    public var occurrence: Int

    public init(_ action: Action, occurrence: Int = 1) {
        self.action = action
        self.occurrence = max(1, occurrence)
    }

    /// The errno names a spec may use.
    public static let errnoNames: [(name: String, code: Int32)] = [
        ("EIO", EIO), ("ENOSPC", ENOSPC), ("EDQUOT", EDQUOT), ("EROFS", EROFS), ("EACCES", EACCES),
        ("EPERM", EPERM), ("ESTALE", ESTALE), ("EINTR", EINTR), ("EBADF", EBADF),
    ]

    public static func errnoName(_ code: Int32) -> String {
        errnoNames.first { $0.code == code }?.name ?? String(code)
    }

    /// Parses a spec such as `crash:after-rename` or `fail:fsync:EIO@2`.
    public init(parsing spec: String) throws(InvalidRequestError) {
        let example = "write it like crash:after-rename or fail:fsync:EIO@2"
        var body = Substring(spec)
        var occurrence = 1
        if let at = body.lastIndex(of: "@") {
            guard let n = Int(body[body.index(after: at)...]), n >= 1 else {
                throw InvalidRequestError(
                    "file fault '\(spec)': the occurrence after '@' must be a whole number from 1; \(example)"
                )
            }
            occurrence = n
            body = body[..<at]
        }
        let parts = body.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch parts.first {
        case "crash" where parts.count == 2:
            guard let step = Step(rawValue: parts[1]) else {
                throw InvalidRequestError(
                    "file fault '\(spec)': unknown step '\(parts[1])'; steps are "
                        + Step.allCases.map(\.rawValue).joined(separator: ", "))
            }
            self.init(.crash(step), occurrence: occurrence)
        case "fail" where parts.count == 3:
            guard let call = Call(rawValue: parts[1]) else {
                throw InvalidRequestError(
                    "file fault '\(spec)': unknown call '\(parts[1])'; calls are "
                        + Call.allCases.map(\.rawValue).joined(separator: ", "))
            }
            guard let code = Self.errnoNames.first(where: { $0.name == parts[2] })?.code else {
                throw InvalidRequestError(
                    "file fault '\(spec)': unknown errno '\(parts[2])'; use one of "
                        + Self.errnoNames.map(\.name).joined(separator: ", "))
            }
            self.init(.fail(call, errno: code), occurrence: occurrence)
        default:
            throw InvalidRequestError("file fault '\(spec)' is not crash:STEP or fail:CALL:ERRNO; \(example)")
        }
    }

    public var description: String {
        let suffix = occurrence == 1 ? "" : "@\(occurrence)"
        switch action {
        case .crash(let step): return "crash:\(step.rawValue)\(suffix)"
        case .fail(let call, let code): return "fail:\(call.rawValue):\(Self.errnoName(code))\(suffix)"
        }
    }
}

/// Wraps a `FileIO` so that it injects one `FileFault`.
///
/// It recognises the steps of `PathStorage` from the calls themselves: a creating open of a
/// `.tmp-…` file makes a temporary-file descriptor; renames and unlinks of other than `.tmp-…`
/// files are commits of their folder, whose next fsync is the commit's directory fsync; any other
/// fsync of a directory makes a folder's entry durable in its parent.
public final class FileFaultInjector: Sendable {
    /// What a crash does.
    public enum CrashMode: Sendable {
        /// `_exit(86)` at once, as a power cut of the process: no cleanup, no flush, no unwinding.
        case exitProcess
        /// For in-process tests: from the crash point on, every call of this `FileIO` fails with
        /// EIO and changes nothing (a `close` still releases its descriptor, as the kernel does for
        /// a dead process), so the files stay exactly as the crash left them.
        case simulate
    }

    public let fault: FileFault
    public let crashMode: CrashMode
    private let base: FileIO
    private let state = Locked(State())

    private struct State {
        var counts: [String: Int] = [:]
        var tempDescriptors: Set<Int32> = []
        /// User files opened for appending.
        var appendDescriptors: Set<Int32> = []
        /// Those of them with a frame (or a part of one) written and not yet synced: their next
        /// `fdatasync` is the append's; any other is the sync of a cut.
        var framesWritten: Set<Int32> = []
        /// Folders with a rename or unlink not yet followed by their fsync.
        var commitDescriptors: Set<Int32> = []
        /// A descriptor whose next write fails (after a short write).
        var failNextWrite: (fd: Int32, errno: Int32)?
        var fired = false
        var crashed = false
    }

    package init(_ fault: FileFault, base: FileIO = .posix, crashMode: CrashMode = .exitProcess) {
        self.fault = fault
        self.base = base
        self.crashMode = crashMode
    }

    /// Whether the fault has fired.
    public var hasFired: Bool { state.withLock { $0.fired } }

    /// Whether a simulated crash has happened (every later call fails).
    public var hasCrashed: Bool { state.withLock { $0.crashed } }

    private enum Kind {
        case temp, append, commitDirectory, directory, other
    }

    private func kind(of fd: Int32) -> Kind {
        let known = state.withLock { s -> Kind? in
            if s.tempDescriptors.contains(fd) { return .temp }
            if s.appendDescriptors.contains(fd) { return .append }
            if s.commitDescriptors.contains(fd) { return .commitDirectory }
            return nil
        }
        if let known { return known }
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .other
    }

    private var isDead: Bool { state.withLock { $0.crashed } }

    /// Counts one occurrence of `event`; true if the fault fires on it.
    private func hits(_ event: String) -> Bool {
        let key: String
        switch fault.action {
        case .crash(let step): key = "crash:" + step.rawValue
        case .fail(let call, _): key = "fail:" + call.rawValue
        }
        guard key == event else { return false }
        return state.withLock { s in
            s.counts[event, default: 0] += 1
            guard !s.fired, s.counts[event] == fault.occurrence else { return false }
            s.fired = true
            return true
        }
    }

    private func crashes(at step: FileFault.Step) -> Bool { hits("crash:" + step.rawValue) }

    /// The errno to fail `call` with, if the fault fires on this occurrence of it.
    private func failure(of call: FileFault.Call) -> Int32? {
        guard case .fail(let c, let code) = fault.action, c == call, hits("fail:" + call.rawValue) else {
            return nil
        }
        return code
    }

    /// Crashes (or, simulated, marks the process dead); the call then returns -1 with EIO.
    private func crash(_ step: FileFault.Step) -> Int32 {
        switch crashMode {
        case .exitProcess:
            writeToStandardError("carbonstore: test fault \(fault): crashing now\n")
            _exit(FileFault.crashExitStatus)
        case .simulate:
            state.withLock { $0.crashed = true }
            errno = EIO
            return -1
        }
    }

    private static func fail(_ code: Int32) -> Int32 {
        errno = code
        return -1
    }

    private static func isTemporary(_ path: String) -> Bool {
        let name = path.split(separator: "/").last ?? ""
        return name.hasPrefix(".tmp-")
    }

    /// The `FileIO` that injects the fault.
    package var io: FileIO {
        FileIO(
            openat: { dir, name, flags, mode in self.openat(dir, name, flags, mode) },
            mkdirat: { dir, name, mode in self.mkdirat(dir, name, mode) },
            write: { fd, buffer in self.write(fd, buffer) },
            fsync: { fd in self.fsync(fd) },
            close: { fd in self.close(fd) },
            renameat: { dir, from, to in self.renameat(dir, from, to) },
            unlinkat: { dir, name in self.unlinkat(dir, name) },
            ftruncate: { fd, length in self.ftruncate(fd, length) },
            datasync: { fd in self.datasync(fd) },
            pwrite: { fd, buffer, offset in self.pwrite(fd, buffer, offset) },
            reserve: { fd, from, to in self.reserve(fd, from, to) },
            openDirectoryBeneath: { dir, path in self.openDirectoryBeneath(dir, path) })
    }

    private func openat(_ dir: Int32, _ name: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        if isDead { return Self.fail(EIO) }
        let isTemp = flags & O_CREAT != 0 && Self.isTemporary(name)
        let isDirectory = flags & O_DIRECTORY != 0
        if isTemp, let code = failure(of: .create) { return Self.fail(code) }
        if isDirectory, let code = failure(of: .directoryOpen) { return Self.fail(code) }
        let isAppend = flags & O_ACCMODE == O_RDWR && flags & O_CREAT == 0 && !isDirectory && !isTemp
        if isAppend, let code = failure(of: .appendOpen) { return Self.fail(code) }
        let fd = base.openat(dir, name, flags, mode)
        if fd >= 0 && isTemp { _ = state.withLock { $0.tempDescriptors.insert(fd) } }
        if fd >= 0 && isAppend { _ = state.withLock { $0.appendDescriptors.insert(fd) } }
        return fd
    }

    /// A folder opened in one call (`openat2`). With a `directory-open` fault planned, the call
    /// answers that it does not exist (ENOSYS), so that the storage opens folders level by level
    /// through `openat`, where the fault is counted and made as before.
    private func openDirectoryBeneath(_ dir: Int32, _ path: String) -> Int32 {
        if isDead { return Self.fail(EIO) }
        if case .fail(.directoryOpen, _) = fault.action { return Self.fail(ENOSYS) }
        return base.openDirectoryBeneath(dir, path)
    }

    private func mkdirat(_ dir: Int32, _ name: String, _ mode: mode_t) -> Int32 {
        if isDead { return Self.fail(EIO) }
        if let code = failure(of: .mkdir) { return Self.fail(code) }
        let r = base.mkdirat(dir, name, mode)
        if r == 0, crashes(at: .afterMkdir) { return crash(.afterMkdir) }
        return r
    }

    private func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int {
        if isDead { return Int(Self.fail(EIO)) }
        let kind = kind(of: fd)
        if kind == .append { return appendWrite(fd, buffer) { self.base.write(fd, $0) } }
        guard kind == .temp else { return base.write(fd, buffer) }
        if let pending = takePendingFailure(fd) { return Int(Self.fail(pending)) }
        if let code = failure(of: .write) { return Int(Self.fail(code)) }
        if case .fail(.shortWrite, let code) = fault.action, buffer.count >= 2, hits("fail:short-write") {
            let n = base.write(fd, UnsafeRawBufferPointer(rebasing: buffer[..<(buffer.count / 2)]))
            if n >= 0 { state.withLock { $0.failNextWrite = (fd, code) } }
            return n
        }
        return base.write(fd, buffer)
    }

    /// A write at an offset: a change frame written in place in a user file opened for appending.
    private func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int) -> Int {
        if isDead { return Int(Self.fail(EIO)) }
        guard kind(of: fd) == .append else { return base.pwrite(fd, buffer, offset) }
        return appendWrite(fd, buffer) { self.base.pwrite(fd, $0, offset) }
    }

    /// The zero bytes an append reserves after the content of a user file.
    private func reserve(_ fd: Int32, _ from: Int, _ to: Int) -> Int32 {
        if isDead { return Self.fail(EIO) }
        if let code = failure(of: .reserveWrite) { return Self.fail(code) }
        if case .fail(.shortReserveWrite, let code) = fault.action, to - from >= 2,
            hits("fail:short-reserve-write")
        {
            _ = base.reserve(fd, from, from + (to - from) / 2)
            return Self.fail(code)
        }
        let r = base.reserve(fd, from, to)
        if r == 0, crashes(at: .afterReserveWrite) { return crash(.afterReserveWrite) }
        return r
    }

    /// A write of a change frame to a user file opened for appending, made by `write` (at the end,
    /// with `O_APPEND`, or at an offset).
    private func appendWrite(
        _ fd: Int32, _ buffer: UnsafeRawBufferPointer, write: (UnsafeRawBufferPointer) -> Int
    ) -> Int {
        if let pending = takePendingFailure(fd) { return Int(Self.fail(pending)) }
        if crashes(at: .beforeAppendWrite) { return Int(crash(.beforeAppendWrite)) }
        _ = state.withLock { $0.framesWritten.insert(fd) }
        if let code = failure(of: .appendWrite) { return Int(Self.fail(code)) }
        let half = UnsafeRawBufferPointer(rebasing: buffer[..<(buffer.count / 2)])
        if buffer.count >= 2, crashes(at: .midAppendWrite) {
            _ = write(half)
            return Int(crash(.midAppendWrite))
        }
        if case .fail(.shortAppendWrite, let code) = fault.action, buffer.count >= 2,
            hits("fail:short-append-write")
        {
            let n = write(half)
            if n >= 0 { state.withLock { $0.failNextWrite = (fd, code) } }
            return n
        }
        return write(buffer)
    }

    /// The errno that a short write left for the next write to `fd`, once.
    private func takePendingFailure(_ fd: Int32) -> Int32? {
        state.withLock { s -> Int32? in
            guard let p = s.failNextWrite, p.fd == fd else { return nil }
            s.failNextWrite = nil
            return p.errno
        }
    }

    private func datasync(_ fd: Int32) -> Int32 {
        if isDead { return Self.fail(EIO) }
        guard kind(of: fd) == .append else { return base.datasync(fd) }
        guard state.withLock({ $0.framesWritten.remove(fd) != nil }) else {
            // The sync of a cut (a torn append's), before any frame is written.
            if let code = failure(of: .cutDatasync) { return Self.fail(code) }
            return base.datasync(fd)
        }
        if crashes(at: .afterAppendWrite) { return crash(.afterAppendWrite) }
        if let code = failure(of: .datasync) { return Self.fail(code) }
        let r = base.datasync(fd)
        if r == 0, crashes(at: .afterAppendDatasync) { return crash(.afterAppendDatasync) }
        return r
    }

    private func ftruncate(_ fd: Int32, _ length: Int) -> Int32 {
        if isDead { return Self.fail(EIO) }
        if let code = failure(of: .truncate) { return Self.fail(code) }
        let r = base.ftruncate(fd, length)
        if r == 0, crashes(at: .afterTruncate) { return crash(.afterTruncate) }
        return r
    }

    private func fsync(_ fd: Int32) -> Int32 {
        if isDead { return Self.fail(EIO) }
        switch kind(of: fd) {
        case .temp:
            if crashes(at: .afterTempWrite) { return crash(.afterTempWrite) }
            if let code = failure(of: .fsync) { return Self.fail(code) }
            let r = base.fsync(fd)
            if r == 0, crashes(at: .afterTempFsync) { return crash(.afterTempFsync) }
            return r
        case .commitDirectory:
            _ = state.withLock { $0.commitDescriptors.remove(fd) }
            if crashes(at: .beforeDirectoryFsync) { return crash(.beforeDirectoryFsync) }
            if let code = failure(of: .directoryFsync) { return Self.fail(code) }
            let r = base.fsync(fd)
            if r == 0, crashes(at: .afterDirectoryFsync) { return crash(.afterDirectoryFsync) }
            return r
        case .directory:
            if crashes(at: .beforeParentFsync) { return crash(.beforeParentFsync) }
            if let code = failure(of: .parentFsync) { return Self.fail(code) }
            let r = base.fsync(fd)
            if r == 0, crashes(at: .afterParentFsync) { return crash(.afterParentFsync) }
            return r
        case .append, .other:
            return base.fsync(fd)
        }
    }

    private func close(_ fd: Int32) -> Int32 {
        let kind = kind(of: fd)
        state.withLock {
            $0.tempDescriptors.remove(fd)
            $0.appendDescriptors.remove(fd)
            $0.framesWritten.remove(fd)
            $0.commitDescriptors.remove(fd)
            if $0.failNextWrite?.fd == fd { $0.failNextWrite = nil }
        }
        if isDead {
            _ = base.close(fd)
            return Self.fail(EIO)
        }
        guard kind == .temp else { return base.close(fd) }
        if let code = failure(of: .close) {
            _ = base.close(fd)
            return Self.fail(code)
        }
        let r = base.close(fd)
        if r == 0, crashes(at: .afterTempClose) { return crash(.afterTempClose) }
        return r
    }

    private func renameat(_ dir: Int32, _ from: String, _ to: String) -> Int32 {
        if isDead { return Self.fail(EIO) }
        if let code = failure(of: .rename) { return Self.fail(code) }
        let r = base.renameat(dir, from, to)
        if r == 0 { _ = state.withLock { $0.commitDescriptors.insert(dir) } }
        if r == 0, crashes(at: .afterRename) { return crash(.afterRename) }
        return r
    }

    private func unlinkat(_ dir: Int32, _ name: String) -> Int32 {
        if isDead { return Self.fail(EIO) }
        if Self.isTemporary(name) { return base.unlinkat(dir, name) }
        if let code = failure(of: .unlink) { return Self.fail(code) }
        let r = base.unlinkat(dir, name)
        if r == 0 { _ = state.withLock { $0.commitDescriptors.insert(dir) } }
        if r == 0, crashes(at: .afterUnlink) { return crash(.afterUnlink) }
        return r
    }
}

private func writeToStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { FileIO.posix.write(2, $0) }
}

extension FileIO {
    /// The system calls of `base` with `fault` injected.
    package static func injecting(
        _ fault: FileFault, into base: FileIO = .posix,
        crashMode: FileFaultInjector.CrashMode = .exitProcess
    ) -> FileIO {
        FileFaultInjector(fault, base: base, crashMode: crashMode).io
    }
}
