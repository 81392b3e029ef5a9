"""Allocate 32 MiB at a time, up to 2 GiB, reporting as it goes."""

blocks = []
for i in range(64):
    blocks.append(bytearray(32 * 1024 * 1024))
    print(f"holding {(i + 1) * 32} MiB")
print("done: nothing stopped me")
