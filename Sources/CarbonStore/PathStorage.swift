import CarbonFormat

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `path:`: one file per key under a root directory on a local or shared volume (EBS, EFS, NFS).
///
/// A write goes to a temporary file in the key's directory (`.tmp-…`), which is written, fsynced and
/// closed; then, holding the directory's commit lock (`.commit.lock`, an advisory file lock), the
/// condition is checked against the current file and the temporary file is renamed over it, and
/// the directory is fsynced. Readers take no lock: rename is atomic, so they see one complete file.
///
/// The version of a file is its inode number, size and CRC32C of its content: a rewrite always
/// changes it, even within the same timestamp tick.
public final class PathStorage: ObjectStorage {
    /// The absolute root directory, without a trailing slash.
    public let root: String
    let io: FileIO
    /// How long a writer waits for a directory's commit lock, which is held only around a rename.
    let commitLockWait: Duration

    /// Opens a root directory. A missing final directory is created if its parent exists; a missing
    /// parent is an error (an unmounted volume should not silently become a local folder).
    public init(root: String, io: FileIO = .posix, commitLockWait: Duration = .seconds(30)) throws {
        self.root = try Self.absolute(root)
        self.io = io
        self.commitLockWait = commitLockWait
        var st = stat()
        if stat(self.root, &st) != 0 {
            let parent = Self.parent(of: self.root)
            guard stat(parent, &st) == 0 else {
                throw InvalidRequestError(
                    "data directory \(self.root) cannot be created: its parent \(parent) does not exist (is the volume mounted?)"
                )
            }
            if mkdir(self.root, 0o755) != 0 && errno != EEXIST {
                throw StorageIOError(operation: "mkdir", path: self.root, errno: errno)
            }
        } else if (st.st_mode & S_IFMT) != S_IFDIR {
            throw InvalidRequestError("data directory \(self.root) exists but is not a directory")
        }
        if access(self.root, W_OK) != 0 {
            throw StorageIOError(operation: "open for writing", path: self.root, errno: errno)
        }
    }

    public func location(of key: String) -> String { path(of: key) }

    func path(of key: String) -> String { root + "/" + key }

    // MARK: - Reading

    public func get(_ key: String) async throws -> StoredObject? {
        try read(path(of: key))
    }

    func read(_ path: String) throws(StorageIOError) -> StoredObject? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw StorageIOError(operation: "open", path: path, errno: errno)
        }
        defer { _ = Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StorageIOError(operation: "stat", path: path, errno: errno) }
        let bytes = try Self.readAll(fd, sizeHint: Int(st.st_size), path: path)
        return StoredObject(bytes: bytes, version: Self.version(inode: UInt64(st.st_ino), bytes: bytes))
    }

    static func version(inode: UInt64, bytes: [UInt8]) -> ObjectVersion {
        let crc = CRC32C.checksum(bytes)
        return ObjectVersion("\(inode)-\(bytes.count)-\(String(crc, radix: 16))")
    }

    static func readAll(_ fd: Int32, sizeHint: Int, path: String) throws(StorageIOError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(sizeHint, 0))
        var filled = 0
        while true {
            if filled == out.count {
                out.append(contentsOf: repeatElement(0, count: max(4096, out.count / 2)))
            }
            let n = out.withUnsafeMutableBytes { buf in
                Glibc.read(fd, buf.baseAddress! + filled, buf.count - filled)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageIOError(operation: "read", path: path, errno: errno)
            }
            if n == 0 { break }
            filled += n
        }
        out.removeSubrange(filled...)
        return out
    }

    // MARK: - Writing

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        let target = path(of: key)
        let dir = Self.parent(of: target)
        try makeDirectories(dir)
        let temp =
            dir + "/.tmp-" + Self.baseName(of: target) + "." + String(getpid()) + "."
            + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let inode = try writeTemporary(temp, bytes: bytes)
        do {
            try await withCommitLock(dir) { () throws -> Void in
                try check(condition, at: target)
                if io.rename(temp, target) != 0 {
                    throw StorageIOError(operation: "rename to \(target) from", path: temp, errno: errno)
                }
                try fsyncDirectory(dir)
            }
        } catch {
            _ = io.unlink(temp)
            throw error
        }
        return Self.version(inode: inode, bytes: bytes)
    }

    /// Creates, writes, fsyncs and closes a new temporary file; returns its inode number.
    func writeTemporary(_ temp: String, bytes: [UInt8]) throws(StorageIOError) -> UInt64 {
        let fd = io.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageIOError(operation: "create", path: temp, errno: errno) }
        func fail(_ op: String, _ code: Int32) -> StorageIOError {
            _ = io.close(fd)
            _ = io.unlink(temp)
            return StorageIOError(operation: op, path: temp, errno: code)
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buf in
                io.write(fd, UnsafeRawBufferPointer(rebasing: buf[written...]))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write", errno)
            }
            if n == 0 { throw fail("write", EIO) }
            written += n
        }
        if io.fsync(fd) != 0 { throw fail("fsync", errno) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw fail("stat", errno) }
        if io.close(fd) != 0 {
            let code = errno
            _ = io.unlink(temp)
            throw StorageIOError(operation: "close", path: temp, errno: code)
        }
        return UInt64(st.st_ino)
    }

    func check(_ condition: WriteCondition, at target: String) throws {
        switch condition {
        case .unconditional:
            return
        case .mustNotExist:
            if let current = try read(target) {
                throw VersionMismatchError(location: target, expected: "no file, found \(current.version)")
            }
        case .mustMatch(let expected):
            let current = try read(target)
            if current?.version != expected {
                throw VersionMismatchError(location: target, expected: expected.rawValue)
            }
        }
    }

    func fsyncDirectory(_ dir: String) throws(StorageIOError) {
        let fd = io.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw StorageIOError(operation: "open directory", path: dir, errno: errno) }
        if io.fsync(fd) != 0 {
            let code = errno
            _ = io.close(fd)
            throw StorageIOError(operation: "fsync directory", path: dir, errno: code)
        }
        _ = io.close(fd)
    }

    func makeDirectories(_ dir: String) throws(StorageIOError) {
        try Self.makeDirectories(dir, below: root)
    }

    /// Creates `dir` and any missing parents up to (not including) `root`.
    static func makeDirectories(_ dir: String, below root: String) throws(StorageIOError) {
        if mkdir(dir, 0o755) == 0 || errno == EEXIST { return }
        guard errno == ENOENT, dir.count > root.count else {
            throw StorageIOError(operation: "mkdir", path: dir, errno: errno)
        }
        try makeDirectories(parent(of: dir), below: root)
        if mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw StorageIOError(operation: "mkdir", path: dir, errno: errno)
        }
    }

    /// Runs `body` holding the directory's commit lock, which serialises check-and-rename between
    /// the tasks and processes of every host that mounts the volume.
    func withCommitLock<T>(_ dir: String, _ body: () throws -> T) async throws -> T {
        let lockPath = dir + "/.commit.lock"
        let lock = try await FileLock.acquire(lockPath, wait: commitLockWait)
        guard let lock else {
            throw StorageIOError(
                operation: "lock (held by a stopped or hung writer?)", path: lockPath, errno: ETIMEDOUT)
        }
        defer { lock.release() }
        return try body()
    }

    // MARK: - Deleting

    @discardableResult
    public func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        let target = path(of: key)
        let dir = Self.parent(of: target)
        var st = stat()
        if stat(dir, &st) != 0 {
            if case .mustMatch(let v) = condition {
                throw VersionMismatchError(location: target, expected: v.rawValue)
            }
            return false
        }
        return try await withCommitLock(dir) { () throws -> Bool in
            try check(condition, at: target)
            if io.unlink(target) != 0 {
                if errno == ENOENT { return false }
                throw StorageIOError(operation: "unlink", path: target, errno: errno)
            }
            try fsyncDirectory(dir)
            return true
        }
    }

    // MARK: - Listing

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        var keys: [String] = []
        let limit = max(limit, 1)
        var more = false
        var base = prefix
        if !base.isEmpty && !base.hasSuffix("/") {
            // Only folder prefixes are meaningful on a volume.
            base = Self.parent(of: "/" + base).dropFirst() + "/"
            if base == "/" { base = "" }
        }
        try walk(relative: String(base.dropLast(base.isEmpty ? 0 : 1)), startAfter: startAfter) { key in
            guard key.hasPrefix(prefix) else { return true }
            if keys.count == limit {
                more = true
                return false
            }
            keys.append(key)
            return true
        }
        return ObjectListing(keys: keys, nextStartAfter: more ? keys.last : nil)
    }

    /// Visits the keys of user files under `relative` in ascending byte order; `visit` returns false
    /// to stop.
    @discardableResult
    func walk(relative: String, startAfter: String?, _ visit: (String) throws -> Bool) throws -> Bool {
        let dirPath = relative.isEmpty ? root : root + "/" + relative
        for entry in try Self.entries(of: dirPath) {
            let key = relative.isEmpty ? entry.name : relative + "/" + entry.name
            if entry.isDirectory {
                let sub = key + "/"
                if let after = startAfter, !after.hasPrefix(sub),
                    sub.utf8.lexicographicallyPrecedes(after.utf8)
                {
                    continue
                }
                if try !walk(relative: key, startAfter: startAfter, visit) { return false }
            } else if key.hasSuffix(UserKeys.fileExtension) {
                if let after = startAfter, !after.utf8.lexicographicallyPrecedes(key.utf8) { continue }
                if try !visit(key) { return false }
            }
        }
        return true
    }

    /// The file name of a directory entry.
    static func name(of entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
    }

    struct Entry {
        var name: String
        var isDirectory: Bool
    }

    /// The visible entries of a directory (names starting with `.` are ours: locks and temporary
    /// files), sorted so that visiting them gives keys in byte order.
    static func entries(of dirPath: String) throws(StorageIOError) -> [Entry] {
        guard let dir = opendir(dirPath) else {
            if errno == ENOENT { return [] }
            throw StorageIOError(operation: "open directory", path: dirPath, errno: errno)
        }
        defer { closedir(dir) }
        var result: [Entry] = []
        while let ent = readdir(dir) {
            let name = Self.name(of: ent)
            if name.hasPrefix(".") { continue }
            var isDir = Int32(ent.pointee.d_type) == Int32(DT_DIR)
            if Int32(ent.pointee.d_type) == Int32(DT_UNKNOWN) {
                var st = stat()
                isDir = lstat(dirPath + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            }
            result.append(Entry(name: name, isDirectory: isDir))
        }
        return result.sorted {
            ($0.isDirectory ? $0.name + "/" : $0.name).utf8.lexicographicallyPrecedes(
                ($1.isDirectory ? $1.name + "/" : $1.name).utf8)
        }
    }

    // MARK: - Temporary files of crashed writers

    /// A temporary file left by a writer that crashed between creating it and renaming it.
    public struct TemporaryFile: Sendable, Hashable {
        public var path: String
        public var ageSeconds: Int64
    }

    /// Every temporary file under the root, with its age.
    public func temporaryFiles() throws -> [TemporaryFile] {
        var found: [TemporaryFile] = []
        let now = Int64(time(nil))
        func scan(_ dir: String) throws {
            guard let d = opendir(dir) else {
                if errno == ENOENT { return }
                throw StorageIOError(operation: "open directory", path: dir, errno: errno)
            }
            defer { closedir(d) }
            var subdirs: [String] = []
            while let ent = readdir(d) {
                let name = Self.name(of: ent)
                if name == "." || name == ".." { continue }
                let full = dir + "/" + name
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    subdirs.append(full)
                } else if name.hasPrefix(".tmp-") {
                    found.append(TemporaryFile(path: full, ageSeconds: now - Int64(st.st_mtim.tv_sec)))
                }
            }
            for s in subdirs { try scan(s) }
        }
        try scan(root)
        return found.sorted { $0.path < $1.path }
    }

    /// Removes temporary files older than `minimumAge`. Safe while writers run: a writer whose
    /// temporary file disappears fails its rename and reports the error; it never reports success.
    @discardableResult
    public func removeTemporaryFiles(olderThan minimumAge: Duration) throws -> [TemporaryFile] {
        let limit = minimumAge.components.seconds
        var removed: [TemporaryFile] = []
        for t in try temporaryFiles() where t.ageSeconds >= limit {
            if io.unlink(t.path) == 0 { removed.append(t) }
        }
        return removed
    }

    // MARK: - Paths

    static func absolute(_ path: String) throws -> String {
        var p = path
        if !p.hasPrefix("/") {
            guard let cwd = getcwd(nil, 0) else {
                throw StorageIOError(operation: "getcwd", path: path, errno: errno)
            }
            defer { free(cwd) }
            p = String(cString: cwd) + "/" + p
        }
        // Normalise: drop empty and "." segments, resolve "..".
        var parts: [Substring] = []
        for seg in p.split(separator: "/", omittingEmptySubsequences: true) {
            if seg == "." { continue }
            if seg == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(seg)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
