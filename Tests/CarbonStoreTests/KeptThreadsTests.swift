import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// `KeptThreads`, the threads kept for blocking work (lock waits, slow syncs): jobs beyond its
/// threads queue and all run; never more at once than it has threads; and when no thread can be
/// started (a failing `pthread_create`), the caller is told and does the work another way: a lock
/// wait polls, a sync runs on the caller's thread.
@Suite struct KeptThreadsTests {
    @Test func jobsBeyondTheThreadsQueueAndAllRunNeverMoreAtOnce() async throws {
        let pool = KeptThreads(name: "test-kept", maximum: 3)
        let seen = CarbonStore.Locked((now: 0, most: 0, ran: Set<Int>(), names: Set<String>()))
        await withCheckedContinuation { (all: CheckedContinuation<Void, Never>) in
            let left = CarbonStore.Locked(20)
            for i in 0..<20 {
                let submitted = pool.submit {
                    seen.withLock {
                        $0.now += 1
                        $0.most = max($0.most, $0.now)
                        $0.names.insert(Thread.current.name ?? "")
                    }
                    usleep(5_000)
                    seen.withLock {
                        $0.now -= 1
                        $0.ran.insert(i)
                    }
                    if left.withLock({ n -> Int in
                        n -= 1
                        return n
                    }) == 0 {
                        all.resume()
                    }
                }
                #expect(submitted)
            }
        }
        let result = seen.withLock { $0 }
        #expect(result.ran == Set(0..<20))
        #expect(result.most <= 3, "\(result.most) jobs ran at once on 3 threads")
        #expect(result.most >= 2)
        #expect(result.names == ["test-kept"])
    }

    /// Holds the one thread of `pool` with a job (submitted `first` or not), queues `jobs` (a
    /// name, and whether it is submitted `first`) meanwhile, lets the thread go, and returns the
    /// names in the order the jobs ran.
    static func order(
        of jobs: [(name: String, first: Bool)], in pool: KeptThreads, heldByFirst: Bool = false
    ) async throws -> [String] {
        let open = CarbonStore.Locked(false)
        let running = CarbonStore.Locked(false)
        let order = CarbonStore.Locked<[String]>([])
        #expect(
            pool.submit(first: heldByFirst) {
                running.withLock { $0 = true }
                while !open.withLock({ $0 }) { usleep(1000) }
            })
        while !running.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
        let left = CarbonStore.Locked(jobs.count)
        await withCheckedContinuation { (all: CheckedContinuation<Void, Never>) in
            for (name, first) in jobs {
                #expect(
                    pool.submit(first: first) {
                        order.withLock { $0.append(name) }
                        if left.withLock({ n -> Int in
                            n -= 1
                            return n
                        }) == 0 {
                            all.resume()
                        }
                    })
            }
            open.withLock { $0 = true }
        }
        return order.withLock { $0 }
    }

    /// Jobs submitted `first` (the steps of a writer holding a lock) go before every job waiting
    /// that was not, in their own order; the others keep theirs.
    @Test func jobsSubmittedFirstGoAheadOfTheOthersWaiting() async throws {
        let pool = KeptThreads(name: "test-first", maximum: 1)
        let jobs = [("a", false), ("b", false), ("x", true), ("c", false), ("y", true), ("z", true)]
        #expect(try await Self.order(of: jobs, in: pool) == ["x", "y", "z", "a", "b", "c"])
    }

    /// A stream of jobs submitted `first` never starves the others: after `firstInARow` of them
    /// taken while others wait, the oldest other job goes.
    @Test func jobsSubmittedFirstLetTheOthersThroughNowAndThen() async throws {
        let pool = KeptThreads(name: "test-first-bound", maximum: 1)
        #expect(KeptThreads.firstInARow == 4)
        let jobs = [("n1", false), ("n2", false)] + (1...10).map { ("f\($0)", true) }
        #expect(
            try await Self.order(of: jobs, in: pool) == [
                "f1", "f2", "f3", "f4", "n1", "f5", "f6", "f7", "f8", "n2", "f9", "f10",
            ])
        // `first` jobs taken while no other job waited do not count: four in a row go again
        // before the next other job. The thread is held by a `first` job this time, taken with no
        // other job waiting.
        let again = [("n3", false)] + (1...4).map { ("g\($0)", true) }
        #expect(
            try await Self.order(of: again, in: pool, heldByFirst: true) == ["g1", "g2", "g3", "g4", "n3"])
    }

    @Test func whenNoThreadCanStartTheCallerIsToldAndTheJobNeverRuns() async throws {
        let refusing = CarbonStore.Locked(true)
        let pool = KeptThreads(name: "test-refusing", maximum: 2) { !refusing.withLock { $0 } }
        let ran = CarbonStore.Locked(0)
        #expect(!pool.submit { ran.withLock { $0 += 1 } })
        #expect(!pool.submit { ran.withLock { $0 += 1 } })
        // Threads can start again: jobs run, the refused ones never.
        refusing.withLock { $0 = false }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            #expect(pool.submit { done.resume() })
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(ran.withLock { $0 } == 0)
    }

    @Test func aSyncWithNoThreadRunsOnTheCallersThread() async throws {
        let refusing = CarbonStore.Locked(true)
        let threads = SyncThreads(maximum: 2) { !refusing.withLock { $0 } }
        let (result, code) = await threads.run {
            errno = EIO
            return (Thread.current.name == "sync" ? 1 : -1, errno)
        }
        #expect(result == -1, "ran on a sync thread")
        #expect(code == EIO)
        refusing.withLock { $0 = false }
        let (again, _) = await threads.run { (Thread.current.name == "sync" ? 1 : -1, 0) }
        #expect(again == 1, "did not run on a sync thread once threads could start")
    }

    @Test func aLockWaitWithNoThreadPollsAndStillGetsTheLock() async throws {
        let dir = try TemporaryDirectory("kept-threads-lock")
        defer { dir.remove() }
        let path = dir.path + "/.lock"
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(holder >= 0 && flock(holder, LOCK_EX | LOCK_NB) == 0)
        let pool = KeptThreads(name: "test-no-flock", maximum: 2) { false }
        let waiter = open(path, O_RDWR | O_CLOEXEC)
        #expect(waiter >= 0 && flock(waiter, LOCK_EX | LOCK_NB) != 0)
        let waiting = Task { try await FileLock.wait(waiter, path: path, for: .seconds(20), pool: pool) }
        try await Task.sleep(for: .milliseconds(150))
        _ = flock(holder, LOCK_UN)
        close(holder)
        #expect(try await waiting.value, "the waiter, polling, did not get the lock once it was let go")
        // It holds it now: another descriptor cannot take it.
        let other = open(path, O_RDWR | O_CLOEXEC)
        #expect(flock(other, LOCK_EX | LOCK_NB) != 0)
        close(other)
        FileLock(fd: waiter, path: path).release()
    }

    @Test func aLockWaitWithNoThreadThatTimesOutClosesItsDescriptor() async throws {
        let dir = try TemporaryDirectory("kept-threads-timeout")
        defer { dir.remove() }
        let path = dir.path + "/.lock"
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(holder) }
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        let pool = KeptThreads(name: "test-no-flock-timeout", maximum: 2) { false }
        let waiter = open(path, O_RDWR | O_CLOEXEC)
        let got = try await FileLock.wait(waiter, path: path, for: .milliseconds(200), pool: pool)
        #expect(!got)
        // The descriptor was closed by the wait (an fcntl on it fails with EBADF), or reused for
        // something else already: either way it is not the waiter's open lock file any more.
        var st = stat()
        var lockStat = stat()
        #expect(stat(path, &lockStat) == 0)
        let sameFile = fstat(waiter, &st) == 0 && st.st_ino == lockStat.st_ino && st.st_dev == lockStat.st_dev
        #expect(!sameFile, "the waiter's descriptor is still open on the lock file")
    }
}
