import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// The `flock` that serialises writers between processes: a waiter on a local file system waits in
/// the kernel's queue (so the lock passes to it as soon as it is let go, without a poll interval),
/// and a waiter that gives up (timeout, cancellation) never holds the lock afterwards.
@Suite(.serialized) struct FileLockTests {
    /// The threads this suite's waits block in: a pool of their own, with as many threads as the
    /// process's (`BlockingFlock.pool`), so that the waits of suites running beside this one never
    /// take the room that these tests count on.
    static let pool = KeptThreads(name: "test-file-lock", maximum: BlockingFlock.maximumThreads)

    /// An open folder with a lock file in it.
    struct Folder {
        let dir: TemporaryDirectory
        let fd: Int32

        init() throws {
            dir = try TemporaryDirectory("file-lock")
            fd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            #expect(fd >= 0)
        }

        var lockPath: String { dir.path + "/.lock" }

        func acquire(wait: Duration) async throws -> FileLock? {
            try await FileLock.acquire(
                ".lock", in: fd, path: lockPath, mode: 0o600, wait: wait, pool: FileLockTests.pool)
        }

        /// Tries the lock once through a descriptor of its own (another writer, as another process
        /// would); the descriptor holding it is returned, or nil if the lock is held elsewhere.
        func tryOtherDescriptor() -> Int32? {
            let other = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard other >= 0 else { return nil }
            if flock(other, LOCK_EX | LOCK_NB) == 0 { return other }
            close(other)
            return nil
        }

        /// Descriptors of this process open on the lock file.
        func openDescriptors() -> Int {
            let resolved = URL(fileURLWithPath: lockPath).resolvingSymlinksInPath().path
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            return entries.filter {
                let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)
                return target == resolved || target == lockPath
            }.count
        }

        /// Whether the kernel has a waiter queued on the lock file (a `->` line of /proc/locks for
        /// its inode): a waiter blocked in `flock`, not one polling it.
        func kernelHasQueuedWaiter() throws -> Bool {
            var st = stat()
            guard stat(lockPath, &st) == 0 else { return false }
            let locks = try String(contentsOfFile: "/proc/locks", encoding: .utf8)
            return locks.split(separator: "\n").contains { line in
                line.contains("->") && line.contains("FLOCK")
                    && line.split(separator: " ").contains { $0.hasSuffix(":\(st.st_ino)") }
            }
        }

        func remove() {
            close(fd)
            dir.remove()
        }
    }

    static func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return try condition()
    }

    @Test func aWaiterOnALocalFileSystemWaitsInTheKernelQueueAndIsHandedTheLock() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        let holder = try #require(try await folder.acquire(wait: .seconds(1)))
        let waiter = Task { try await folder.acquire(wait: .seconds(60)) }
        // Queued in the kernel: the hand-over needs no poll of the waiter's.
        #expect(try await Self.eventually { try folder.kernelHasQueuedWaiter() })
        let released = ContinuousClock.now
        holder.release()
        let lock = try #require(try await waiter.value)
        let handOver = ContinuousClock.now - released
        // Generous: the waiter's task resumes on the cooperative pool, which the suites that run
        // alongside may keep busy for seconds (threads stopped on purpose). The proof of a
        // kernel-queued hand-over is the queued waiter above; this only rules out a timeout.
        #expect(handOver < .seconds(30))
        #expect(folder.tryOtherDescriptor() == nil, "the waiter holds the lock")
        lock.release()
        let other = try #require(folder.tryOtherDescriptor())
        close(other)
    }

    @Test func aWaiterThatTimesOutNeverHoldsTheLockAfterwards() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        let holder = try #require(try await folder.acquire(wait: .seconds(1)))
        let start = ContinuousClock.now
        let gaveUp = try await folder.acquire(wait: .milliseconds(200))
        #expect(gaveUp == nil)
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        // Its thread is still queued for the lock; when the holder lets it go, the thread takes it
        // and lets it go at once, and closes its descriptor.
        holder.release()
        #expect(await Self.eventually { folder.openDescriptors() == 0 }, "the waiter's descriptor is closed")
        let other = try #require(folder.tryOtherDescriptor(), "another descriptor takes the lock")
        close(other)
    }

    @Test func aWaiterWithNoTimeLeftTriesOnceAndLeavesNothingBehind() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        let other = try #require(folder.tryOtherDescriptor())
        defer { close(other) }
        let threads = Self.pool.reserved
        let descriptors = folder.openDescriptors()  // the holder's
        for wait in [Duration.zero, .milliseconds(-5)] {
            #expect(try await folder.acquire(wait: wait) == nil)
            // No thread was given a wait, and the waiter's descriptor is closed now, not when the
            // holder lets the lock go.
            #expect(Self.pool.reserved == threads)
            #expect(folder.openDescriptors() == descriptors)
        }
    }

    @Test func theHolderOfALockFileThatIsNotARegularFileIsNeverReadFrom() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        // A FIFO with no writer: opening it to read would wait for one.
        #expect(mkfifo(folder.lockPath, 0o600) == 0)
        let start = ContinuousClock.now
        #expect(FileLockService.readHolder(".lock", in: folder.fd) == nil)
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func onlyLocalFileSystemsWaitInTheKernel() throws {
        let folder = try Folder()
        defer { folder.remove() }
        // This folder is on the test machine's disk (ext4 or tmpfs, both local); a pipe is not a
        // file system that answers flock itself.
        #expect(FileLock.isOnLocalFileSystem(folder.fd))
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        #expect(!FileLock.isOnLocalFileSystem(fds[0]))
    }

    @Test func aWaiterThatTimesOutWhileAnotherDescriptorHoldsItLeavesTheLockToThatOne() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        // The holder is another descriptor (another process): it keeps the lock throughout.
        let other = try #require(folder.tryOtherDescriptor())
        #expect(try await folder.acquire(wait: .milliseconds(100)) == nil)
        #expect(try await folder.acquire(wait: .milliseconds(100)) == nil)
        close(other)
        // The two abandoned threads may take the lock in turn, each letting it go at once.
        #expect(await Self.eventually { folder.openDescriptors() == 0 })
        let again = try #require(folder.tryOtherDescriptor())
        close(again)
    }

    @Test func aCancelledWaiterThrowsAndNeverHoldsTheLock() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        let holder = try #require(try await folder.acquire(wait: .seconds(1)))
        let waiter = Task { try await folder.acquire(wait: .seconds(60)) }
        #expect(try await Self.eventually { try folder.kernelHasQueuedWaiter() })
        let cancelled = ContinuousClock.now
        waiter.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiter.value }
        #expect(ContinuousClock.now - cancelled < .seconds(30), "cancellation does not wait for the lock")
        holder.release()
        #expect(await Self.eventually { folder.openDescriptors() == 0 })
        let other = try #require(folder.tryOtherDescriptor())
        close(other)
    }

    @Test func locksAreHandedOverBetweenManyWaitersWithoutLoss() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        let inside = CarbonStore.Locked(0)
        let most = CarbonStore.Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<50 {
                        let lock = try #require(try await folder.acquire(wait: .seconds(30)))
                        let n = inside.withLock {
                            $0 += 1
                            return $0
                        }
                        most.withLock { $0 = max($0, n) }
                        // Held across a suspension, so that the others wait for it.
                        try await Task.sleep(for: .microseconds(200))
                        inside.withLock { $0 -= 1 }
                        lock.release()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(most.withLock { $0 } == 1)
        #expect(await Self.eventually { folder.openDescriptors() == 0 })
    }

    @Test func waitersBeyondTheThreadLimitPollAndAllGetTheirLocks() async throws {
        // The waits of the tests before this one have given their threads back.
        #expect(await Self.eventually { Self.pool.reserved == 0 })
        let count = Self.pool.maximum + 4
        var folders: [Folder] = []
        var others: [Int32] = []
        for _ in 0..<count {
            let folder = try Folder()
            folders.append(folder)
            others.append(try #require(folder.tryOtherDescriptor()))
        }
        defer { for folder in folders { folder.remove() } }
        let waiters = folders.map { folder in Task { try await folder.acquire(wait: .seconds(60)) } }
        // Every waiter is waiting before the locks are let go: as many in the kernel as the pool has
        // threads, the others polling.
        #expect(
            await Self.eventually {
                (try? folders.filter { try $0.kernelHasQueuedWaiter() }.count) == Self.pool.maximum
            })
        try await Task.sleep(for: .milliseconds(100))
        #expect(Self.pool.reserved <= Self.pool.maximum)
        #expect(try folders.filter { try $0.kernelHasQueuedWaiter() }.count <= Self.pool.maximum)
        for other in others { close(other) }
        for waiter in waiters {
            let lock = try #require(try await waiter.value)
            lock.release()
        }
        for folder in folders {
            #expect(await Self.eventually { folder.openDescriptors() == 0 })
        }
    }

    @Test func theHolderTextIsReadBackWithoutItsPadding() async throws {
        let folder = try Folder()
        defer { folder.remove() }
        let lock = try #require(try await folder.acquire(wait: .seconds(1)))
        lock.describeHolder("pid 1 on a-host, operation a-long-operation-id-that-is-written-first")
        lock.release()
        let shorter = try #require(try await folder.acquire(wait: .seconds(1)))
        shorter.describeHolder("pid 2 on b, operation b")
        #expect(FileLockService.readHolder(".lock", in: folder.fd) == "pid 2 on b, operation b")
        shorter.release()
    }
}
