import CarbonModel

/// One caller's `Store.update`, waiting in its user's line to be committed in a batch.
///
/// The mutation is the caller's non-escaping closure, made escapable with
/// `withoutActuallyEscaping` for as long as the caller waits: the batch's leader runs it while the
/// caller is suspended in `GroupCommitter.submit`, never at the same time as the caller, and drops
/// it before it resumes the caller. That is why this class may be `@unchecked Sendable`: every
/// field is written before the caller is resumed, and read after (the resumption orders them).
final class UpdateJob: @unchecked Sendable {
    typealias Mutation = (inout UserRecord) throws -> Any

    /// The caller's mutation, type-erased; nil once the batch is over.
    var mutate: Mutation?
    /// What the latest attempt made of this job: its value, the record right after its mutation,
    /// and what was done; or the error its mutation threw.
    var outcome: Result<(value: Any, record: UserRecord, outcome: CommitOutcome), any Error>?
    /// Set while the job waits for its batch (or for its turn to lead one).
    fileprivate var continuation: CheckedContinuation<GroupCommitter.Role, Never>?

    init(_ mutate: @escaping Mutation) { self.mutate = mutate }
}

/// The calls one lock hold commits: the leader's, and those of every caller that joined the line
/// before the leader read the user (`gather`), in arrival order.
final class UpdateBatch: Sendable {
    private let jobs: Locked<[UpdateJob]>
    private let source: (@Sendable (_ room: Int) -> [UpdateJob])?
    let maximum: Int

    init(_ first: UpdateJob, maximum: Int = 1, source: (@Sendable (Int) -> [UpdateJob])? = nil) {
        jobs = Locked([first])
        self.maximum = max(1, maximum)
        self.source = source
    }

    /// A batch of these calls alone (a failed batch's calls, committed again).
    init(_ jobs: [UpdateJob]) {
        self.jobs = Locked(jobs)
        maximum = jobs.count
        source = nil
    }

    /// Takes the calls waiting in the line now (up to the batch's maximum) into the batch; returns
    /// the whole batch.
    func gather() -> [UpdateJob] {
        jobs.withLock { jobs in
            if let source, jobs.count < maximum { jobs += source(maximum - jobs.count) }
            return jobs
        }
    }

    var all: [UpdateJob] { jobs.withLock { $0 } }
}

/// When the leader of a batch yields before it gathers the batch (`GroupCommitter.submit`). A yield
/// lets the calls started together with the leader, and queued behind it on a busy pool, join its
/// line; on a pool with an idle thread nobody is queued, and the yield only costs a thread's
/// wake-up (measured: docs/BENCHMARKS.md, round eleven). So a leader yields while yields find
/// callers, or callers join lines by themselves; after `quietLimit` yields in a row that found
/// nobody it yields again when:
///
/// - another task leads a batch of the same user less than `burstGap` after that user's last batch
///   ended: calls of a burst that ran one after another on a busy pool (a task that updates a user
///   in a loop leads each batch itself, and is not taken for a burst);
/// - or it is every `probeEvery`-th leader.
///
/// A pure state machine, fed the time; a `GroupCommitter` keeps one for all its users.
struct YieldPolicy: Sendable {
    static let quietLimit = 8
    static let probeEvery = 16
    static let burstGap = Duration.milliseconds(1)

    /// Yields in a row after which nobody had joined the leader's line (at most `quietLimit`).
    private(set) var quietYields = 0
    /// Batches led (wrapping).
    private(set) var leads: UInt = 0
    /// Leaders that yielded.
    private(set) var yieldCount = 0
    /// The last batch that ended: its user, the task that led it, and when.
    private var lastBatch: (key: String, leader: Int, ended: ContinuousClock.Instant)?

    /// `leader` (a task's identity) is about to lead a batch of `key`: whether it yields first.
    mutating func leaderYields(key: String, leader: Int, now: ContinuousClock.Instant) -> Bool {
        leads &+= 1
        if let last = lastBatch, last.key == key, last.leader != leader, now - last.ended < Self.burstGap {
            quietYields = 0
        }
        let yields = quietYields < Self.quietLimit || leads % UInt(Self.probeEvery) == 0
        if yields { yieldCount += 1 }
        return yields
    }

    /// After a leader's yield: whether any caller had joined its line by then.
    mutating func yielded(joined: Bool) {
        quietYields = joined ? 0 : min(quietYields + 1, Self.quietLimit)
    }

    /// A caller found a batch of its user under way and joined the line.
    mutating func callerJoined() { quietYields = 0 }

    /// A batch of `key` led by `leader` has ended.
    mutating func batchEnded(key: String, leader: Int, now: ContinuousClock.Instant) {
        lastBatch = (key, leader, now)
    }
}

/// Group commit: the concurrent updates of one user in one process are coalesced. The first
/// caller leads: it takes the user's lock, and once it holds it, it reads the user and takes every
/// call waiting in line by then into its batch; it applies their mutations in the order they
/// arrived, writes once and releases the lock. Callers that arrive later wait; when a batch ends,
/// the first of them leads the next one. Between batches the lock is released, so writers in other
/// processes take their turns as before.
final class GroupCommitter: Sendable {
    enum Role: Sendable { case lead, done }

    /// Callers waiting for a user; a user has an entry while a batch of theirs is being led.
    private let lines = Locked([String: [UpdateJob]]())
    /// The most mutations one batch applies.
    let maximumBatch: Int
    /// Whether leaders yield before gathering their batch.
    private let yielding = Locked(YieldPolicy())
    /// How many leaders yielded (for the package's tests).
    package var yieldCount: Int { yielding.withLock { $0.yieldCount } }

    init(maximumBatch: Int = 64) { self.maximumBatch = max(1, maximumBatch) }

    /// Waits until `job` has been committed, in a batch led by this caller or by another.
    func submit(_ key: String, _ job: UpdateJob, commit: (UpdateBatch) async -> Void) async {
        let role = await withCheckedContinuation { (c: CheckedContinuation<Role, Never>) in
            let leads = lines.withLock { lines -> Bool in
                guard lines[key] != nil else {
                    lines[key] = []
                    return true
                }
                job.continuation = c
                lines[key]!.append(job)
                return false
            }
            if leads {
                c.resume(returning: .lead)
            } else {
                yielding.withLock { $0.callerJoined() }
            }
        }
        guard role == .lead else { return }
        // Let the calls started together with this one join the line before the batch is
        // gathered. On a local disk the leader takes the lock, reads and writes without waiting
        // (`Store.lead`): without this yield, when every thread of the pool is busy the calls
        // started with it only run once its batch is over, and each then commits alone (measured:
        // 8 concurrent updates took as long as 8 in turn, docs/BENCHMARKS.md, round nine). Not
        // while yields find nobody to wait for (`YieldPolicy`).
        let leader = withUnsafeCurrentTask { $0?.hashValue } ?? 0
        if yielding.withLock({ $0.leaderYields(key: key, leader: leader, now: .now) }) {
            await Task.yield()
            let joined = lines.withLock { !($0[key]?.isEmpty ?? true) }
            yielding.withLock { $0.yielded(joined: joined) }
        }
        let batch = UpdateBatch(job, maximum: maximumBatch) { [lines] room in
            lines.withLock { lines in
                let waiting = lines[key] ?? []
                let taken = Array(waiting.prefix(room))
                lines[key] = Array(waiting.dropFirst(taken.count))
                return taken
            }
        }
        await commit(batch)
        yielding.withLock { $0.batchEnded(key: key, leader: leader, now: .now) }
        let done = batch.all
        for j in done { j.mutate = nil }
        let next = lines.withLock { lines -> UpdateJob? in
            guard let waiting = lines[key], let first = waiting.first else {
                lines[key] = nil
                return nil
            }
            lines[key] = Array(waiting.dropFirst())
            return first
        }
        for j in done.dropFirst() { Self.resume(j, .done) }
        if let next { Self.resume(next, .lead) }
    }

    /// How many calls wait in `key`'s line (not counting the batch being led).
    func waiting(_ key: String) -> Int { lines.withLock { $0[key]?.count ?? 0 } }

    private static func resume(_ job: UpdateJob, _ role: Role) {
        let c = job.continuation
        job.continuation = nil
        c?.resume(returning: role)
    }
}
