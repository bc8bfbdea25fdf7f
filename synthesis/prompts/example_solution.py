def max_window_sum(readings, window):
    current = sum(readings[:window])
    best = current
    for i in range(window, len(readings)):
        current += readings[i] - readings[i - window]
        best = max(best, current)
    return best
