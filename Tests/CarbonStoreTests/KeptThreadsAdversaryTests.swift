import CarbonStoreTestSupport
import Dispatch
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// The review of `KeptThreads` and the lock waits handed to it: a job queued while another job's
/// thread was being started, a start that fails, hundreds of submits from many threads with starts
/// failing at random, and many lock waits (timeouts, cancellations, threads that cannot start) on
/// lock files held and let go, checked for descriptors, kernel locks and the count of reserved
/// waits (each test's pool counts its own: `KeptThreads.reserve`).
@Suite(.serialized) struct KeptThreadsAdversaryTests {
    /// Runs `body` on a thread of its own (never one of the cooperative pool's, which the blocking
    /// waits of these tests would take from every task) and returns what it returned.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (done: CheckedContinuation<T, Never>) in
            let thread = Thread { done.resume(returning: body()) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    // MARK: - A job queued behind a thread that fails to start

    @Test(.timeLimit(.minutes(2)))
    func aJobQueuedWhileAnotherJobsThreadFailsToStartStillRuns() async {
        // One thread at most. The first submit needs a thread; while it is being started, a second
        // job is submitted, and only then does the start fail. The first job is refused; the second,
        // accepted, must run: no thread may be left counted for it that never came.
        let entered = DispatchSemaphore(value: 0)
        let secondSubmitted = DispatchSemaphore(value: 0)
        let starts = CarbonStore.Locked(0)
        let pool = KeptThreads(name: "test-phantom", maximum: 1) {
            let first = starts.withLock { n -> Bool in
                n += 1
                return n == 1
            }
            guard first else { return true }
            entered.signal()
            // Fails once the second job is in (or after 2 s, when the second submit has to wait
            // for this start to be decided).
            _ = secondSubmitted.wait(timeout: .now() + 2)
            return false
        }
        let ran = CarbonStore.Locked((first: 0, second: 0))
        let secondRan = DispatchSemaphore(value: 0)
        let outcome = await Self.onThread { () -> (first: Bool?, second: Bool, secondRan: Bool) in
            let firstAnswer = CarbonStore.Locked<Bool?>(nil)
            let firstDone = DispatchSemaphore(value: 0)
            let a = Thread {
                let accepted = pool.submit { ran.withLock { $0.first += 1 } }
                firstAnswer.withLock { $0 = accepted }
                firstDone.signal()
            }
            a.start()
            guard entered.wait(timeout: .now() + 20) == .success else { return (nil, false, false) }
            let second = pool.submit {
                ran.withLock { $0.second += 1 }
                secondRan.signal()
            }
            secondSubmitted.signal()
            _ = firstDone.wait(timeout: .now() + 20)
            let didRun = second && secondRan.wait(timeout: .now() + 20) == .success
            return (firstAnswer.withLock { $0 }, second, didRun)
        }
        #expect(outcome.first == false, "the submit whose thread failed to start was not refused")
        #expect(outcome.second, "the second submit was refused")
        #expect(outcome.secondRan, "an accepted job was left in the queue with no thread to run it")
        try? await Task.sleep(for: .milliseconds(100))
        let counts = ran.withLock { $0 }
        #expect(counts.first == 0, "a refused job ran")
        #expect(counts.second == (outcome.secondRan ? 1 : 0))
    }

    // MARK: - Hundreds of submits, starts failing at random

    @Test(.timeLimit(.minutes(3)), arguments: [1, 3])
    func manySubmittersWithFailingStartsRunEveryAcceptedJobOnceAndNoRefusedOne(maximum: Int) async {
        // Eight threads submit 150 jobs each; most thread starts fail, and each start takes a
        // little while to decide (the window in which other jobs are submitted). Every accepted
        // job runs exactly once, no refused one ever runs, never more than `maximum` at once, and
        // nothing is left in the queue.
        let starts = CarbonStore.Locked(UInt64(0x9E37_79B9_7F4A_7C15))
        let pool = KeptThreads(name: "test-flaky", maximum: maximum) {
            let roll = starts.withLock { s -> UInt64 in
                s ^= s << 13
                s ^= s >> 7
                s ^= s << 17
                return s
            }
            usleep(UInt32(roll % 300))
            return roll % 4 == 0
        }
        struct Seen {
            var now = 0
            var most = 0
            var runs: [Int: Int] = [:]
            var accepted: Set<Int> = []
            var refused: Set<Int> = []
        }
        let seen = CarbonStore.Locked(Seen())
        let submitters = 8
        let perSubmitter = 150
        await Self.onThread {
            let group = DispatchGroup()
            for s in 0..<submitters {
                group.enter()
                let thread = Thread {
                    for j in 0..<perSubmitter {
                        let id = s * perSubmitter + j
                        let accepted = pool.submit {
                            seen.withLock {
                                $0.now += 1
                                $0.most = max($0.most, $0.now)
                            }
                            usleep(UInt32(id % 5) * 50)
                            seen.withLock {
                                $0.now -= 1
                                $0.runs[id, default: 0] += 1
                            }
                        }
                        seen.withLock {
                            if accepted { $0.accepted.insert(id) } else { $0.refused.insert(id) }
                        }
                    }
                    group.leave()
                }
                thread.start()
            }
            group.wait()
        }
        // Every accepted job runs (no later submit comes to rescue one stranded in the queue).
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let done = seen.withLock { $0.runs.count >= $0.accepted.count }
            if done { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        try? await Task.sleep(for: .milliseconds(100))
        let result = seen.withLock { $0 }
        #expect(result.accepted.count + result.refused.count == submitters * perSubmitter)
        #expect(!result.accepted.isEmpty && !result.refused.isEmpty, "starts never failed, or always")
        #expect(
            Set(result.runs.keys) == result.accepted, "accepted jobs that never ran, or refused ones that did"
        )
        #expect(result.runs.values.allSatisfy { $0 == 1 }, "a job ran more than once")
        #expect(result.most <= maximum, "\(result.most) jobs ran at once on \(maximum) threads")
    }

    // MARK: - Many lock waits in every outcome

    /// Descriptors of this process open on a file in `folder`.
    static func descriptors(in folder: String) -> [String] {
        let resolved = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
        return descriptorTargets().values.filter {
            $0.hasPrefix(folder + "/") || $0.hasPrefix(resolved + "/")
        }
    }

    /// What the descriptors of this process are open on.
    static func descriptorTargets() -> [String: String] {
        var targets: [String: String] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            targets[entry] =
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + entry)) ?? "?"
        }
        return targets
    }

    /// Lines of /proc/locks for the files with these inodes: (held, queued in the kernel).
    static func kernelLocks(_ inodes: Set<UInt64>) -> (held: Int, queued: Int) {
        let text = (try? String(contentsOfFile: "/proc/locks", encoding: .utf8)) ?? ""
        var held = 0
        var queued = 0
        for line in text.split(separator: "\n") where line.contains("FLOCK") {
            let ours = line.split(separator: " ").contains { field in
                guard let inode = field.split(separator: ":").last.flatMap({ UInt64($0) }) else {
                    return false
                }
                return field.split(separator: ":").count == 3 && inodes.contains(inode)
            }
            guard ours else { continue }
            if line.contains("->") { queued += 1 } else { held += 1 }
        }
        return (held, queued)
    }

    enum Outcome: Sendable, Equatable {
        case got
        case timedOut
        case cancelled
        case failed
    }

    @Test(.timeLimit(.minutes(4)))
    func manyLockWaitsInEveryOutcomeLeaveNoDescriptorLockOrReservation() async throws {
        let dir = try TemporaryDirectory("kept-adversary-locks")
        defer { dir.remove() }
        let paths = (0..<4).map { dir.path + "/lock\($0)" }
        // A third of the thread starts fail: those waits poll.
        let starts = CarbonStore.Locked(0)
        let pool = KeptThreads(name: "test-flock-flaky", maximum: BlockingFlock.maximumThreads) {
            starts.withLock { n -> Bool in
                n += 1
                return n % 3 != 0
            }
        }
        var inodes: Set<UInt64> = []
        for path in paths {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            var st = stat()
            #expect(fd >= 0 && fstat(fd, &st) == 0)
            inodes.insert(UInt64(st.st_ino))
            close(fd)
        }
        // Descriptors opened as waits end, kept open to the end: a descriptor closed twice (the
        // second time after its number was reused) would shut one of these.
        let sentinels = CarbonStore.Locked<[Int32]>([])
        var outcomes: [Outcome: Int] = [:]
        var mostQueued = 0
        for round in 0..<3 {
            let holders = paths.map { open($0, O_RDWR | O_CLOEXEC) }
            for holder in holders { #expect(flock(holder, LOCK_EX | LOCK_NB) == 0) }
            var tasks: [(kind: Int, task: Task<Outcome, Never>)] = []
            for i in 0..<40 {
                let path = paths[i % paths.count]
                let fd = open(path, O_RDWR | O_CLOEXEC)
                #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0)
                let kind = (i / paths.count + round) % 4
                let wait: Duration =
                    switch kind {
                    case 0: .seconds(60)
                    case 1: .milliseconds(20 + i)
                    case 2: .seconds(60)
                    default: .milliseconds(150)
                    }
                let task = Task.detached { () -> Outcome in
                    let outcome: Outcome
                    do {
                        if try await FileLock.wait(fd, path: path, for: wait, pool: pool) {
                            // Held: no other descriptor can take it.
                            let other = open(path, O_RDWR | O_CLOEXEC)
                            let exclusive = flock(other, LOCK_EX | LOCK_NB) != 0
                            close(other)
                            FileLock(fd: fd, path: path).release()
                            outcome = exclusive ? .got : .failed
                        } else {
                            outcome = .timedOut
                        }
                    } catch is CancellationError {
                        outcome = .cancelled
                    } catch {
                        outcome = .failed
                    }
                    let sentinel = open("/dev/null", O_RDONLY | O_CLOEXEC)
                    sentinels.withLock { $0.append(sentinel) }
                    return outcome
                }
                if kind == 2 {
                    Task.detached {
                        try? await Task.sleep(for: .milliseconds(5 + (i * 7) % 200))
                        task.cancel()
                    }
                }
                tasks.append((kind, task))
            }
            // While the holders hold: never more than 16 waits blocked in the kernel.
            for _ in 0..<60 {
                try await Task.sleep(for: .milliseconds(10))
                let queued = Self.kernelLocks(inodes).queued
                mostQueued = max(mostQueued, queued)
            }
            for holder in holders {
                _ = flock(holder, LOCK_UN)
                close(holder)
            }
            for (kind, task) in tasks {
                let outcome = await task.value
                outcomes[outcome, default: 0] += 1
                // Waits long enough get the lock once let go; short ones time out first (the
                // holders hold for 600 ms); the cancelled ones are cancelled before.
                let expected: Outcome = [0: .got, 2: .cancelled][kind] ?? .timedOut
                #expect(outcome == expected, "a wait of kind \(kind) ended \(outcome)")
            }
        }
        #expect(outcomes[.failed] == nil, "a wait failed, or got a lock that was not its alone: \(outcomes)")
        #expect(starts.withLock { $0 } >= 3, "no thread start was refused")
        #expect(mostQueued <= BlockingFlock.maximumThreads, "\(mostQueued) waits blocked in the kernel")
        #expect(mostQueued >= 1, "no wait was blocked in the kernel")
        // Once every thread's flock has returned: no reservation, descriptor or lock left.
        let deadline = ContinuousClock.now + .seconds(20)
        var settled = false
        while ContinuousClock.now < deadline {
            let reserved = pool.reserved
            let locks = Self.kernelLocks(inodes)
            if reserved == 0 && locks == (0, 0)
                && Self.descriptors(in: dir.path).isEmpty
            {
                settled = true
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(
            settled,
            "open on the lock files: \(Self.descriptors(in: dir.path)); reserved \(pool.reserved), locks \(Self.kernelLocks(inodes))"
        )
        for sentinel in sentinels.withLock({ $0 }) {
            var st = stat()
            #expect(
                fstat(sentinel, &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR,
                "a sentinel descriptor was closed")
            close(sentinel)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aWaitCancelledBeforeItStartsClosesItsDescriptorOnceAndFreesItsReservation() async throws {
        // The task is cancelled before it asks: the cancellation handler runs before the wait is
        // handed to a thread, and the wait closes the descriptor itself, once.
        let dir = try TemporaryDirectory("kept-adversary-precancelled")
        defer { dir.remove() }
        let path = dir.path + "/.lock"
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(holder) }
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        let pool = KeptThreads(name: "test-precancelled", maximum: 2)
        for _ in 0..<20 {
            let waiter = open(path, O_RDWR | O_CLOEXEC)
            let task = Task.detached { () -> (threw: Bool, sentinel: Int32) in
                withUnsafeCurrentTask { $0?.cancel() }
                let threw: Bool
                do {
                    _ = try await FileLock.wait(waiter, path: path, for: .seconds(30), pool: pool)
                    threw = false
                } catch {
                    threw = error is CancellationError
                }
                // Takes the lowest free number: most likely the waiter's, once closed. A second
                // close of that number would shut this one.
                return (threw, open("/dev/null", O_RDONLY | O_CLOEXEC))
            }
            let (threw, sentinel) = await task.value
            #expect(threw, "a wait whose task was cancelled did not throw CancellationError")
            var lockFile = stat()
            var atWaiter = stat()
            #expect(stat(path, &lockFile) == 0)
            let stillOpen = fstat(waiter, &atWaiter) == 0 && atWaiter.st_ino == lockFile.st_ino
            #expect(!stillOpen, "the waiter's descriptor was not closed when the wait ended")
            try await Task.sleep(for: .milliseconds(5))
            var st = stat()
            #expect(fstat(sentinel, &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR, "closed twice")
            close(sentinel)
        }
        // A reservation this test leaked would stay; one whose thread is on its way back goes.
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, pool.reserved != 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(pool.reserved == 0)
    }

    @Test(.timeLimit(.minutes(2)), arguments: [false, true])
    func aWaiterThatGivesUpWhileItsThreadIsStartingIsAnsweredOnceAndClosesOnce(threadStarts: Bool)
        async throws
    {
        // The thread's start takes longer than the wait (its deadline, or its cancellation, comes
        // while `submit` is still deciding), then fails (the wait closes the descriptor: no one
        // polls it) or succeeds (the thread finds the waiter gone and closes the descriptor
        // without blocking in `flock`). The start is held up on the waiting task's thread: 100 ms,
        // ten times the wait, or until the task is cancelled.
        let dir = try TemporaryDirectory("kept-adversary-giveup")
        defer { dir.remove() }
        let path = dir.path + "/.lock"
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        var lockFile = stat()
        #expect(stat(path, &lockFile) == 0)
        let inode = UInt64(lockFile.st_ino)
        var waiters: [Int32] = []
        var pools: [KeptThreads] = []
        for round in 0..<6 {
            let cancels = round % 2 == 1
            // The waiting task, for a cancellation made while its thread is starting.
            let waiting = CarbonStore.Locked<Task<String, Never>?>(nil)
            // A pool of its own: every wait needs a thread started. The start is held up past the
            // wait's deadline, or until the waiting task has been cancelled, however late a busy
            // cooperative pool runs the timer and the test.
            let pool = KeptThreads(name: "test-slow-start", maximum: 1) {
                if cancels {
                    let asked = ContinuousClock.now
                    while waiting.withLock({ $0 }) == nil && ContinuousClock.now - asked < .seconds(10) {
                        usleep(1000)
                    }
                    waiting.withLock { $0 }?.cancel()
                } else {
                    usleep(100_000)
                }
                return threadStarts
            }
            pools.append(pool)
            let waiter = open(path, O_RDWR | O_CLOEXEC)
            waiters.append(waiter)
            let task = Task.detached { () -> String in
                do {
                    let got = try await FileLock.wait(
                        waiter, path: path, for: cancels ? .seconds(30) : .milliseconds(10), pool: pool)
                    return got ? "got" : "timedOut"
                } catch is CancellationError {
                    return "cancelled"
                } catch {
                    return "\(error)"
                }
            }
            waiting.withLock { $0 = task }
            #expect(await task.value == (cancels ? "cancelled" : "timedOut"))
        }
        // Every waiter gave up before a thread came to its wait: none is blocked in the kernel for
        // it (a thread that blocked would stay so, counted among the 16, until the holder lets go).
        try await Task.sleep(for: .milliseconds(200))
        let blocked = Self.kernelLocks([inode]).queued
        #expect(blocked == 0, "\(blocked) threads blocked in the kernel for waiters that gave up")
        _ = flock(holder, LOCK_UN)
        close(holder)
        let deadline = ContinuousClock.now + .seconds(20)
        var settled = false
        while ContinuousClock.now < deadline {
            let openOnLock = waiters.contains { fd in
                var st = stat()
                return fstat(fd, &st) == 0 && UInt64(st.st_ino) == inode
            }
            if !openOnLock && Self.kernelLocks([inode]) == (0, 0)
                && pools.allSatisfy({ $0.reserved == 0 })
            {
                settled = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(settled, "a descriptor left open, a lock left held, or a reservation not given back")
    }

    /// A wait whose time is up when its thread comes to it, while its timer has not run yet: the
    /// thread answers it itself and never blocks in `flock` for it behind a holder that does not
    /// let go. The timer is made late here as a busy process makes it late: it cannot use the
    /// deadlines' thread (`Deadlines` whose thread cannot start), so it is a task, and every thread
    /// of the cooperative pool is busy.
    @Test(.timeLimit(.minutes(1)))
    func aWaitWhoseTimerRunsLateIsNotBlockedForInTheKernel() async throws {
        let dir = try TemporaryDirectory("kept-adversary-late-timer")
        defer { dir.remove() }
        let path = dir.path + "/.lock"
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(holder) }
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        var lockFile = stat()
        #expect(stat(path, &lockFile) == 0)
        let inode = UInt64(lockFile.st_ino)
        // The thread's start, made on the waiting task's thread, first fills every other thread of
        // the cooperative pool for 300 ms (more tasks than it has threads), so that the wait's
        // timer (10 ms) cannot run, then takes 100 ms.
        let busy = ProcessInfo.processInfo.activeProcessorCount * 2
        let pool = KeptThreads(name: "test-late-timer", maximum: 1) {
            for _ in 0..<busy { Task.detached { usleep(300_000) } }
            usleep(100_000)
            return true
        }
        let waiter = open(path, O_RDWR | O_CLOEXEC)
        let late = Deadlines(mayStartThread: { false })
        let answer = try await FileLock.wait(
            waiter, path: path, for: .milliseconds(10), pool: pool, deadlines: late)
        #expect(!answer, "the wait timed out")
        let blocked = Self.kernelLocks([inode]).queued
        #expect(blocked == 0, "\(blocked) threads blocked in the kernel for a wait that was over")
        var st = stat()
        #expect(!(fstat(waiter, &st) == 0 && UInt64(st.st_ino) == inode), "the waiter's descriptor is closed")
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, pool.reserved != 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(pool.reserved == 0)
    }
}
