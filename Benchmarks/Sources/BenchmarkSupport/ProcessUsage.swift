#if canImport(Glibc)
    import Glibc
#endif

/// What the process has used so far (`getrusage` of the process, every thread): processor time,
/// user plus system, and context switches (voluntary: it waited; involuntary: it was preempted).
/// Taken before and after a loop, the difference is the loop's: less noisy than the wall clock,
/// which the disk's latency moves by tens of microseconds.
public struct ProcessUsage: Sendable {
    public var processorMicroseconds: Int
    public var voluntarySwitches: Int
    public var involuntarySwitches: Int

    public static func now() -> ProcessUsage {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        let seconds = Int(u.ru_utime.tv_sec) + Int(u.ru_stime.tv_sec)
        return ProcessUsage(
            processorMicroseconds: seconds * 1_000_000 + Int(u.ru_utime.tv_usec) + Int(u.ru_stime.tv_usec),
            voluntarySwitches: Int(u.ru_nvcsw), involuntarySwitches: Int(u.ru_nivcsw))
    }

    /// The processor time as a duration.
    public var processorTime: Duration { .microseconds(processorMicroseconds) }
}
