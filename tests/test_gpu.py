"""gitproof.gpu against a fake nvidia-smi executable (the one boundary we fake)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gitproof import gpu
from gitproof.gpu import GpuDevice

H100 = "0, NVIDIA H100 80GB HBM3, GPU-11111111-2222-3333-4444-555555555555, 550.54.15, 81559, 9.0"
A100_0 = "0, NVIDIA A100-SXM4-80GB, GPU-aaaaaaaa-0000-0000-0000-0000, 535.104.05, 81920, 8.0"
A100_1 = "1, NVIDIA A100-SXM4-80GB, GPU-bbbbbbbb-0000-0000-0000-0000, 535.104.05, 81920, 8.0"
OLD_DRIVER = "0, Tesla K80, [N/A], 470.82.01, 11441"


def fake_smi(tmp_path: Path, body: str, name: str = "nvidia-smi") -> Path:
    """Write an executable shell script standing in for nvidia-smi."""
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def printing(tmp_path: Path, *lines: str) -> Path:
    text = "\n".join(lines)
    return fake_smi(tmp_path, f"cat <<'EOF'\n{text}\nEOF\n")


@pytest.fixture(autouse=True)
def no_cached_visibility():
    gpu.gpu_visible.cache_clear()
    yield
    gpu.gpu_visible.cache_clear()


def test_one_device(tmp_path):
    devices = gpu.detect_gpus(program=str(printing(tmp_path, H100)))
    assert devices == [GpuDevice(0, "NVIDIA H100 80GB HBM3",
                                 "GPU-11111111-2222-3333-4444-555555555555",
                                 "550.54.15", 81559, "9.0")]


def test_query_arguments(tmp_path):
    log = tmp_path / "args"
    program = fake_smi(tmp_path, f'echo "$@" > "{log}"\necho "{H100}"\n')
    rows = gpu.query_nvidia_smi(str(program))
    assert log.read_text().split() == [
        "--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap",
        "--format=csv,noheader,nounits",
    ]
    assert rows == [{
        "index": "0", "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-11111111-2222-3333-4444-555555555555", "driver_version": "550.54.15",
        "memory.total": "81559", "compute_cap": "9.0",
    }]


def test_two_devices_sorted_by_index(tmp_path):
    devices = gpu.detect_gpus(program=str(printing(tmp_path, A100_1, A100_0)))
    assert [d.index for d in devices] == [0, 1]
    assert {d.memory_mib for d in devices} == {81920}
    assert gpu.summary(devices) == "2x NVIDIA A100-SXM4-80GB"


def test_old_driver_retries_without_compute_cap(tmp_path):
    program = fake_smi(tmp_path, f"""\
case "$1" in
  *compute_cap*) echo 'Field "compute_cap" is not a valid field to query.'; exit 2 ;;
esac
echo "{OLD_DRIVER}"
""")
    rows = gpu.query_nvidia_smi(str(program))
    assert rows is not None and "compute_cap" not in rows[0]
    (device,) = gpu.detect_gpus(program=str(program))
    assert device == GpuDevice(0, "Tesla K80", None, "470.82.01", 11441, None)


def test_failing_nvidia_smi_means_no_gpu(tmp_path):
    program = fake_smi(tmp_path, "echo 'No devices were found'\nexit 6\n")
    assert gpu.query_nvidia_smi(str(program)) is None
    assert gpu.detect_gpus(program=str(program)) == []


def test_absent_program(tmp_path):
    assert gpu.query_nvidia_smi(str(tmp_path / "no-such-nvidia-smi")) is None
    assert gpu.detect_gpus(program=str(tmp_path / "no-such-nvidia-smi")) == []


def test_garbled_output_is_not_evidence(tmp_path):
    assert gpu.query_nvidia_smi(str(printing(tmp_path, "0, half a row"))) is None


def test_hanging_program_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "TIMEOUT_S", 0.5)
    assert gpu.query_nvidia_smi(str(fake_smi(tmp_path, "exec sleep 30\n"))) is None


def test_uuid_opt_out(tmp_path):
    (device,) = gpu.detect_gpus(include_uuid=False, program=str(printing(tmp_path, H100)))
    assert device.uuid is None
    assert "uuid" not in device.to_dict()


def test_env_var_selects_program(tmp_path, monkeypatch):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    assert gpu.summary(gpu.detect_gpus()) == "NVIDIA H100 80GB HBM3"
    assert gpu.gpu_visible() is True


def test_gpu_visible_false_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    assert gpu.gpu_visible() is False
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    assert gpu.gpu_visible() is False  # cached for the process


def test_dict_round_trip():
    device = GpuDevice(1, "NVIDIA L4", "GPU-1234", "550.54.15", 23034, "8.9")
    assert device.to_dict() == {
        "index": 1, "name": "NVIDIA L4", "uuid": "GPU-1234", "driver": "550.54.15",
        "memory_mib": 23034, "compute_capability": "8.9",
    }
    assert GpuDevice.from_dict(device.to_dict()) == device
    anonymous = GpuDevice(0, "NVIDIA L4", None, "550.54.15", 23034, None)
    assert GpuDevice.from_dict(anonymous.to_dict()) == anonymous


def test_from_dict_ignores_unknown_keys():
    data = {"name": "NVIDIA B200", "driver": "570.1", "memory_mib": 183359,
            "mig_mode": "disabled", "power_limit_w": 1000}
    assert GpuDevice.from_dict(data) == GpuDevice(0, "NVIDIA B200", None, "570.1", 183359, None)


def test_from_dict_names_missing_keys():
    with pytest.raises(ValueError, match="driver, memory_mib"):
        GpuDevice.from_dict({"name": "NVIDIA L4"})


@pytest.mark.parametrize("key, value", [("memory_mib", "80GB"), ("name", None),
                                        ("index", True), ("uuid", 5)])
def test_from_dict_rejects_wrong_types(key, value):
    data = {"index": 0, "name": "NVIDIA L4", "driver": "550", "memory_mib": 1, key: value}
    with pytest.raises(ValueError, match=key):
        GpuDevice.from_dict(data)


def test_summary_strings():
    h100 = GpuDevice(0, "NVIDIA H100 80GB HBM3", None, "550", 81559, "9.0")
    l4 = GpuDevice(2, "NVIDIA L4", None, "550", 23034, "8.9")
    assert gpu.summary([]) == "none"
    assert gpu.summary([h100]) == "NVIDIA H100 80GB HBM3"
    assert gpu.summary([h100, h100]) == "2x NVIDIA H100 80GB HBM3"
    assert gpu.summary([h100, h100, l4]) == "2x NVIDIA H100 80GB HBM3, NVIDIA L4"
