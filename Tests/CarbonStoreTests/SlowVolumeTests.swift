import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// On a network file system every blocking step of a `path:` operation leaves the cooperative pool
/// (`PathStorage.blocking`, `SyncThreads`): opening folders and files, reading, a lock's first try,
/// an append's fence and write, a rename. On EFS or NFS each of these waits for a server, and made
/// on one of the pool's threads (one per core) it would stop every other task of the process. On
/// a local file system they stay on the caller's thread.
///
/// A network file system is emulated (`PathStorage.onSlowVolume`): the storage is told to offload
/// as it would decide by itself there, and a hook at the start of every step records its thread
/// and, where asked, holds the step as a round trip would.
@Suite struct SlowVolumeTests {
    static func txn(_ id: String) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    /// What the steps of a storage saw: how many, on which threads, how many at once.
    final class Steps: Sendable {
        struct State {
            var count = 0
            var offPool = 0
            var inFlight = 0
            var mostInFlight = 0
        }
        let state = CarbonStore.Locked(State())
        /// How long each step holds its thread.
        let hold: Duration

        init(hold: Duration = .zero) { self.hold = hold }

        func step() {
            state.withLock { s in
                s.count += 1
                if Thread.current.name == "sync" { s.offPool += 1 }
                s.inFlight += 1
                s.mostInFlight = max(s.mostInFlight, s.inFlight)
            }
            if hold > .zero { Thread.sleep(forTimeInterval: Double(hold.nanoseconds) / 1e9) }
            state.withLock { $0.inFlight -= 1 }
        }

        var seen: State { state.withLock { $0 } }
    }

    static func storage(_ dir: TemporaryDirectory, offloading: Bool, steps: Steps) throws -> PathStorage {
        try PathStorage.onSlowVolume(
            root: dir.path, stepDelay: .zero, offloadingFileWork: offloading, onStep: { _ in steps.step() })
    }

    @Test func aLocalFileSystemKeepsItsStepsOnTheCallersThread() throws {
        let dir = try TemporaryDirectory("slow-volume-local")
        defer { dir.remove() }
        // This machine's temporary folder is on a local file system (ext4, XFS, tmpfs, overlay).
        let storage = try PathStorage(root: dir.path)
        #expect(!storage.offloadsFileWork)
        let fd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(fd) }
        #expect(!FileLock.isOnNetworkFileSystem(fd))
        #expect(FileLock.isOnLocalFileSystem(fd))
    }

    /// Every kind of operation, each with its steps counted: all of them off the pool when the
    /// storage offloads, none when it does not, and the same results either way.
    @Test(arguments: [true, false])
    func everyStepOfEveryOperationRunsWhereTheStorageSays(offloading: Bool) async throws {
        let dir = try TemporaryDirectory("slow-volume-steps")
        defer { dir.remove() }
        let steps = Steps()
        let storage = try Self.storage(dir, offloading: offloading, steps: steps)
        #expect(storage.offloadsFileWork == offloading)
        #expect(storage.offloadsSyncs == offloading)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        var before = 0
        func stepsSince() -> Int {
            let now = steps.seen.count
            defer { before = now }
            return now - before
        }
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }  // a new file: a snapshot write
        #expect(stepsSince() >= 4)
        try await store.update("alice") { try $0.upsert(Self.txn("t2")) }  // an append
        #expect(stepsSince() >= 4)
        #expect(try await store.read("alice")?.transactions.count == 2)  // a version check
        #expect(stepsSince() >= 1)
        let other = Store(storage: storage, locks: FileLockService(storage: storage))
        #expect(try await other.get("alice").transactions.map(\.id) == ["t1", "t2"])  // a whole read
        #expect(stepsSince() >= 1)
        #expect(try await storage.list(prefix: "", startAfter: nil, limit: 10).keys.count == 1)
        #expect(stepsSince() == 1)
        #expect(try await store.delete("alice") == .deleted)
        #expect(stepsSince() >= 3)
        #expect(try await store.read("alice") == nil)
        let seen = steps.seen
        #expect(
            seen.offPool == (offloading ? seen.count : 0),
            "\(seen.offPool) of \(seen.count) steps off the pool")
    }

    /// Sixteen users updated at once while every step holds its thread, as round trips to a server
    /// would: offloaded, many steps are in progress at once; on the caller's thread, no more than
    /// the cooperative pool has threads. Every update is kept either way. (On the caller's thread
    /// the held steps stop every task of the test process, so there they are held 2 ms, for one
    /// update per user.)
    @Test(arguments: [true, false])
    func slowStepsOfManyUsersOverlapOnlyOffThePool(offloading: Bool) async throws {
        let dir = try TemporaryDirectory("slow-volume-overlap")
        defer { dir.remove() }
        let steps = Steps(hold: offloading ? .milliseconds(20) : .milliseconds(2))
        let updates = offloading ? 3 : 1
        let storage = try Self.storage(dir, offloading: offloading, steps: steps)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        let users = (0..<16).map { "user-\($0)" }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for user in users {
                group.addTask {
                    for k in 0..<updates {
                        try await store.update(user) { try $0.upsert(Self.txn("\(user)-\(k)")) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let check = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        for user in users {
            #expect(try await check.get(user).transactions.count == updates, "\(user)")
        }
        let seen = steps.seen
        if offloading {
            #expect(seen.mostInFlight >= 8, "at most \(seen.mostInFlight) steps at once")
        } else {
            #expect(
                seen.mostInFlight <= ProcessInfo.processInfo.activeProcessorCount,
                "\(seen.mostInFlight) steps at once on \(ProcessInfo.processInfo.activeProcessorCount) cores")
        }
    }

    /// Writers of two stores on one folder (as two processes would be), every step off the pool,
    /// contending for the same users: every acknowledged update is in the file, in both lock modes.
    @Test(arguments: ["local", "none"])
    func contendingWritersOffThePoolLoseNothing(locking: String) async throws {
        let dir = try TemporaryDirectory("slow-volume-contention")
        defer { dir.remove() }
        func makeStore() throws -> Store {
            let storage = try PathStorage.onSlowVolume(root: dir.path, stepDelay: .zero)
            let locks: any LockService =
                locking == "local" ? FileLockService(storage: storage) : NoLockService()
            return Store(storage: storage, locks: locks)
        }
        let stores = [try makeStore(), try makeStore()]
        let acknowledged = try await withThrowingTaskGroup(of: [String].self) { group in
            for t in 0..<8 {
                group.addTask {
                    var mine: [String] = []
                    for a in 0..<15 {
                        let id = "t\(t)-\(a)"
                        try await stores[t % 2].update(a % 2 == 0 ? "u1" : "u2") {
                            try $0.upsert(Self.txn(id))
                        }
                        mine.append(id)
                    }
                    return mine
                }
            }
            var all: [String] = []
            for try await part in group { all += part }
            return all
        }
        let check = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        let stored = Set(
            try await check.get("u1").transactions.map(\.id) + check.get("u2").transactions.map(\.id))
        #expect(Set(acknowledged).subtracting(stored).isEmpty)
        #expect(stored.count == 120)
    }

    /// A step's error reaches the caller from the thread that met it, with its context: a link
    /// planted in a user file's place is refused, by a read and by an update alike.
    @Test func aStepsErrorReachesTheCaller() async throws {
        let dir = try TemporaryDirectory("slow-volume-error")
        defer { dir.remove() }
        let steps = Steps()
        let storage = try Self.storage(dir, offloading: true, steps: steps)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("mallory") { try $0.upsert(Self.txn("t1")) }
        let file = storage.location(of: try UserKeys().key(for: "mallory"))
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.createSymbolicLink(atPath: file, withDestinationPath: "/etc/passwd")
        let fresh = Store(storage: storage, locks: FileLockService(storage: storage))
        await #expect(throws: UnsafePathError.self) { _ = try await fresh.read("mallory") }
        await #expect(throws: UnsafePathError.self) {
            try await fresh.update("mallory") { try $0.upsert(Self.txn("t2")) }
        }
        #expect(steps.seen.offPool == steps.seen.count)
    }

    /// Every system call that the storage makes through `FileIO`, with whether it ran on a sync
    /// thread; and faults to inject: the next `write` lands half its bytes and fails, the next
    /// `fsync` or `fdatasync` fails.
    final class Recorder: Sendable {
        struct State {
            var calls: [(name: String, offPool: Bool)] = []
            var failWrite: Int32?
            var failFsync: Int32?
            var failDatasync: Int32?
            /// Descriptors of folders, open now.
            var folders: Set<Int32> = []
        }
        let state = CarbonStore.Locked(State())

        func note(_ name: String) {
            state.withLock { $0.calls.append((name, Thread.current.name == "sync")) }
        }

        func take(_ fault: WritableKeyPath<State, Int32?>) -> Int32? {
            state.withLock { s in
                defer { s[keyPath: fault] = nil }
                return s[keyPath: fault]
            }
        }

        var io: FileIO {
            let p = FileIO.posix
            return FileIO(
                openat: { d, n, f, m in
                    self.note("openat")
                    let fd = p.openat(d, n, f, m)
                    if fd >= 0 && f & O_DIRECTORY != 0 { self.state.withLock { _ = $0.folders.insert(fd) } }
                    return fd
                },
                mkdirat: { d, n, m in
                    self.note("mkdirat")
                    return p.mkdirat(d, n, m)
                },
                write: { fd, b in
                    self.note("write")
                    guard let code = self.take(\.failWrite) else { return p.write(fd, b) }
                    if b.count > 1 { _ = p.write(fd, UnsafeRawBufferPointer(rebasing: b[..<(b.count / 2)])) }
                    errno = code
                    return -1
                },
                fsync: { fd in
                    self.note("fsync")
                    guard let code = self.take(\.failFsync) else { return p.fsync(fd) }
                    errno = code
                    return -1
                },
                close: { fd in
                    // A folder opened by a walk (an operation's folder is closed through `io`
                    // too, once the operation is over: `PathStorage.withOperation`).
                    var st = stat()
                    let isDirectory = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
                    let folder = self.state.withLock { $0.folders.remove(fd) != nil } || isDirectory
                    self.note(folder ? "close a folder" : "close")
                    return p.close(fd)
                },
                renameat: { d, a, b in
                    self.note("renameat")
                    return p.renameat(d, a, b)
                },
                unlinkat: { d, n in
                    self.note("unlinkat")
                    return p.unlinkat(d, n)
                },
                ftruncate: { fd, l in
                    self.note("ftruncate")
                    return p.ftruncate(fd, l)
                },
                datasync: { fd in
                    self.note("datasync")
                    guard let code = self.take(\.failDatasync) else { return p.datasync(fd) }
                    errno = code
                    return -1
                },
                pwrite: { fd, b, offset in
                    self.note("pwrite")
                    guard let code = self.take(\.failWrite) else { return p.pwrite(fd, b, offset) }
                    if b.count > 1 {
                        _ = p.pwrite(fd, UnsafeRawBufferPointer(rebasing: b[..<(b.count / 2)]), offset)
                    }
                    errno = code
                    return -1
                },
                reserve: { fd, from, to in
                    self.note("reserve")
                    return p.reserve(fd, from, to)
                },
                openDirectoryBeneath: { d, path in
                    self.note("openat")
                    let fd = p.openDirectoryBeneath(d, path)
                    if fd >= 0 { self.state.withLock { _ = $0.folders.insert(fd) } }
                    return fd
                })
        }

        /// The calls made on the caller's thread, except those named.
        func onPool(except allowed: Set<String>) -> [String] {
            state.withLock { $0.calls.filter { !$0.offPool && !allowed.contains($0.name) }.map(\.name) }
        }

        func reset() { state.withLock { $0.calls = [] } }
    }

    /// A store on `dir` whose storage offloads every step and makes its calls through a `Recorder`.
    static func recorded(_ dir: TemporaryDirectory) throws -> (Recorder, PathStorage, Store) {
        let recorder = Recorder()
        let storage = try PathStorage(root: dir.path, io: recorder.io, offloadFileWork: true)
        return (recorder, storage, Store(storage: storage, locks: FileLockService(storage: storage)))
    }

    /// Offloading, every system call of a snapshot write, an append and a delete runs on a sync
    /// thread: only closing a folder's descriptor stays with the task. (A step that bypassed
    /// `blocking` would call `openat`, `write` or `renameat` on the caller's thread; a user file
    /// closed by the task, `close`.)
    @Test func everySystemCallOfAWriteRunsOffThePool() async throws {
        let dir = try TemporaryDirectory("slow-volume-calls")
        defer { dir.remove() }
        let (recorder, storage, store) = try Self.recorded(dir)
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        try await store.update("alice") { try $0.upsert(Self.txn("t2")) }
        #expect(try await store.delete("alice") == .deleted)
        #expect(recorder.onPool(except: ["close a folder"]).isEmpty, "\(recorder.onPool(except: []))")
        #expect(recorder.state.withLock { $0.calls.count } > 10)
    }

    /// Failures met on sync threads: a failed `fsync` of a snapshot's temporary file, a failed
    /// `fdatasync` of an append (the frame is cut), and a disk full halfway through an append (the
    /// next writer cuts the torn frame). Each fails its update with the call and its errno; nothing
    /// of them stays in the files, and only closing folders, and closing and removing a failed
    /// temporary file, happen on the caller's thread.
    @Test func failuresOnSyncThreadsAreReportedAndLeaveNothing() async throws {
        let dir = try TemporaryDirectory("slow-volume-faults")
        defer { dir.remove() }
        let (recorder, storage, store) = try Self.recorded(dir)
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let file = storage.location(of: try UserKeys().key(for: "alice"))
        recorder.reset()

        // A snapshot write (the folder is durable already: the fsync that fails is the temporary
        // file's).
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        recorder.state.withLock { $0.failFsync = EIO }
        let temp = await #expect(throws: StorageIOError.self) {
            _ = try await storage.put(
                try UserKeys().key(for: "alice"), bytes: [UInt8](before), condition: .unconditional)
        }
        #expect(temp?.operation == "fsync" && temp?.errno == EIO)
        #expect(try storage.temporaryFiles().isEmpty)

        recorder.state.withLock { $0.failDatasync = EIO }
        let datasync = await #expect(throws: StorageIOError.self) {
            try await store.update("alice") { try $0.upsert(Self.txn("t2")) }
        }
        #expect(datasync?.operation == "fdatasync" && datasync?.errno == EIO)
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before, "the frame is cut")

        recorder.state.withLock { $0.failWrite = ENOSPC }
        let full = await #expect(throws: StorageIOError.self) {
            try await store.update("alice") { try $0.upsert(Self.txn("t3")) }
        }
        #expect(full?.errno == ENOSPC)
        try await store.update("alice") { try $0.upsert(Self.txn("t4")) }
        let check = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        #expect(try await check.get("alice").transactions.map(\.id) == ["t1", "t4"])
        #expect(
            recorder.onPool(except: ["close a folder", "close", "unlinkat"]).isEmpty,
            "\(recorder.onPool(except: []))")
        // The failed temporary file is the one file closed by the task.
        #expect(recorder.onPool(except: ["close a folder", "unlinkat"]) == ["close"])
    }

    /// A wait for a lock held elsewhere that polls (as every wait does on a network file system;
    /// here because no thread may start to block in `flock`): the file system's type and every
    /// poll's `flock` try are steps of the storage, all off the pool, and the lock is handed over
    /// once the holder lets it go.
    @Test func aPolledLockWaitTriesInStepsOffThePool() async throws {
        let dir = try TemporaryDirectory("slow-volume-poll")
        defer { dir.remove() }
        let steps = Steps()
        let storage = try Self.storage(dir, offloading: true, steps: steps)
        let path = dir.path + "/.lock"
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        let noThreads = KeptThreads(name: "none", maximum: 1, mayStartThread: { false })
        let waiter = open(path, O_RDWR | O_CLOEXEC)
        let waiting = Task {
            try await FileLock.wait(waiter, path: path, for: .seconds(10), on: storage, pool: noThreads)
        }
        // The file system's type, then tries while the lock is held: several of them, however long
        // they wait for a thread (the threads are the process's, which other suites may keep busy).
        let deadline = ContinuousClock.now + .seconds(20)
        while steps.seen.count < 5 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let whileHeld = steps.seen.count
        #expect(flock(holder, LOCK_UN) == 0)
        close(holder)
        #expect(try await waiting.value)
        FileLock(fd: waiter, path: path).release()
        let seen = steps.seen
        #expect(whileHeld >= 5, "\(whileHeld) steps while the lock was held")
        #expect(seen.offPool == seen.count, "\(seen.offPool) of \(seen.count) steps off the pool")
    }

    /// A writer's steps from the moment it holds the user's lock to its release (its read, its
    /// append under the folder's commit lock, the releases) are made under lock, and so go first on
    /// the sync threads (`LockHold`, `KeptThreads.submit(first:)`): a burst of reads never holds up
    /// a writer that others wait for. Taking the lock is not; nor is anything a reader does.
    @Test(arguments: [true, false])
    func aWritersStepsUnderItsLockGoFirstAndAReadersDoNot(offloading: Bool) async throws {
        let dir = try TemporaryDirectory("slow-volume-first")
        defer { dir.remove() }
        let seen = CarbonStore.Locked<[Bool]>([])
        let storage = try PathStorage.onSlowVolume(
            root: dir.path, stepDelay: .zero, offloadingFileWork: offloading,
            onStep: { underLock in seen.withLock { $0.append(underLock) } })
        func steps(_ body: () async throws -> Void) async throws -> [Bool] {
            seen.withLock { $0 = [] }
            try await body()
            return seen.withLock { $0 }
        }
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        for (what, update) in [
            ("a new file", { try await store.update("alice") { try $0.upsert(Self.txn("t1")) } }),
            ("an append", { try await store.update("alice") { try $0.upsert(Self.txn("t2")) } }),
            ("a delete", { _ = try await store.delete("alice") }),
        ] as [(String, () async throws -> Void)] {
            let made = try await steps(update)
            // The lock's folder and first try, then everything under it.
            #expect(made.prefix(2) == [false, false], "\(what): \(made)")
            #expect(made.count >= 6 && made.dropFirst(2).allSatisfy { $0 }, "\(what): \(made)")
        }
        try await store.update("bob") { try $0.upsert(Self.txn("t1")) }
        try await store.update("bob") { try $0.upsert(Self.txn("b1")) }
        // A reader, cached or not, and a listing: nothing under lock.
        let reader = Store(storage: storage, locks: FileLockService(storage: storage))
        let read = try await steps {
            #expect(try await reader.get("bob").transactions.count == 2)
            #expect(try await reader.get("bob").transactions.count == 2)
            _ = try await storage.list(prefix: "", startAfter: nil, limit: 10)
        }
        #expect(read.count >= 3 && read.allSatisfy { !$0 }, "\(read)")
        // A writer that waited for the user's lock (held by another descriptor, as by another
        // process) describes itself as its holder in a step of its own, made holding the lock: one
        // step more under lock than the same append made without waiting.
        let alone = try await steps { try await store.update("bob") { try $0.upsert(Self.txn("b2")) } }
        let lockPath =
            dir.path + "/" + PathStorage.split(try store.keys.key(for: "bob")).folders.joined(separator: "/")
            + "/.lock"
        let other = open(lockPath, O_RDWR | O_CLOEXEC)
        #expect(other >= 0 && flock(other, LOCK_EX | LOCK_NB) == 0)
        seen.withLock { $0 = [] }
        let waited = Task {
            try await steps { try await store.update("bob") { try $0.upsert(Self.txn("b3")) } }
        }
        // Let go once the writer has found the lock taken: its third step (the file system's type,
        // asked by the wait) has begun.
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.withLock({ $0.count }) < 3 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(seen.withLock { $0.count } >= 3, "the writer never came to wait for the lock")
        close(other)
        let afterWait = try await waited.value
        #expect(
            afterWait.filter { $0 }.count == alone.filter { $0 }.count + 1,
            "without waiting: \(alone); after waiting: \(afterWait)")
        #expect(afterWait.last == true)
        // Without user locks (`locking=none`) a writer's steps go first too: from its read on.
        let unlocked = Store(storage: storage, locks: NoLockService())
        let made = try await steps { try await unlocked.update("bob") { try $0.upsert(Self.txn("t2")) } }
        #expect(made.count >= 4 && made.allSatisfy { $0 }, "\(made)")
        // A write made straight to the storage (a restore): its steps under the folder's commit
        // lock go first, the ones before it do not.
        let bytes = try RecordCodec().encodeSnapshot(
            UserRecord(userID: "carol", revision: 1, createdAt: Timestamp(millisecondsSince1970: 0)),
            fileID: .random()
        ).bytes
        let put = try await steps {
            try await storage.put(try store.keys.key(for: "carol"), bytes: bytes, condition: .mustNotExist)
        }
        #expect(put.first == false && put.last == true && put.filter { $0 }.count >= 2, "\(put)")
    }

    /// A step under lock overtakes the steps waiting for the storage's threads that were not: with
    /// the storage's one thread held, a reader's step queued first still runs after the writer's.
    @Test func aStepUnderLockOvertakesTheStepsWaitingBeforeIt() async throws {
        let dir = try TemporaryDirectory("slow-volume-overtake")
        defer { dir.remove() }
        let threads = SyncThreads(maximum: 1)
        let storage = try PathStorage(root: dir.path, io: .posix, offloadFileWork: true, syncThreads: threads)
        let gate = CarbonStore.Locked(false)
        let holding = CarbonStore.Locked(false)
        let holder = Task {
            await threads.run {
                holding.withLock { $0 = true }
                while !gate.withLock({ $0 }) { usleep(1000) }
            }
        }
        func until(_ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while !condition() && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        try await until { holding.withLock { $0 } }
        let order = CarbonStore.Locked<[String]>([])
        let reader = Task { await storage.blocking { order.withLock { $0.append("reader") } } }
        try await until { threads.threads.waiting == 1 }
        let writer = Task {
            await LockHold.$active.withValue(true) {
                await storage.blocking { order.withLock { $0.append("writer") } }
            }
        }
        try await until { threads.threads.waiting == 2 }
        #expect(threads.threads.waiting == 2)
        gate.withLock { $0 = true }
        await holder.value
        await reader.value
        await writer.value
        #expect(order.withLock { $0 } == ["writer", "reader"])
    }
}
