import pytest
from scrapy import Spider
from scrapy.exceptions import UsageError
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from crawler.config import (
    IngestionConfig,
    SettingError,
    get_bool,
    get_choice,
    get_float,
    get_int,
    get_positive_float,
    get_positive_int,
)
from crawler.extensions.services import Services


def message(excinfo) -> str:
    return str(excinfo.value)


def test_int_helpers():
    settings = Settings({"A": "12", "B": 7, "EMPTY": " ", "BAD": "abc", "ZERO": "0", "FLOATY": "1.5", "YES": True})
    assert get_int(settings, "A", 1) == 12 and get_int(settings, "B", 1) == 7
    assert get_int(settings, "MISSING", 3) == 3 and get_int(settings, "EMPTY", 3) == 3
    assert get_int(settings, "ZERO", 3, minimum=0) == 0
    with pytest.raises(SettingError) as excinfo:
        get_int(settings, "BAD", 1)
    assert message(excinfo) == "BAD: expected an integer, got 'abc'"
    assert (excinfo.value.name, excinfo.value.expected, excinfo.value.value) == ("BAD", "an integer", "abc")
    assert isinstance(excinfo.value, UsageError)
    with pytest.raises(SettingError, match=r"^FLOATY: expected an integer, got '1.5'$"):
        get_int(settings, "FLOATY", 1)
    with pytest.raises(SettingError, match=r"^YES: expected an integer, got True$"):
        get_int(settings, "YES", 1)
    with pytest.raises(SettingError, match=r"^A: expected an integer between 1 and 10, got '12'$"):
        get_int(settings, "A", 1, minimum=1, maximum=10)
    assert get_positive_int(settings, "A", 1) == 12
    for name in ("ZERO", "BAD"):
        with pytest.raises(SettingError, match=rf"^{name}: expected a positive integer, got "):
            get_positive_int(settings, name, 1)


def test_float_helpers():
    settings = Settings({"A": "0.25", "B": 2, "BAD": "soon", "NAN": "nan", "ZERO": 0, "NEG": "-1"})
    assert get_float(settings, "A", 1.0) == 0.25 and get_float(settings, "B", 1.0) == 2.0
    assert get_float(settings, "MISSING", 3) == 3.0 and isinstance(get_float(settings, "MISSING", 3), float)
    with pytest.raises(SettingError, match=r"^BAD: expected a number, got 'soon'$"):
        get_float(settings, "BAD", 1.0)
    with pytest.raises(SettingError, match=r"^NAN: expected a number, got 'nan'$"):
        get_float(settings, "NAN", 1.0)
    with pytest.raises(SettingError, match=r"^NEG: expected a number >= 0, got '-1'$"):
        get_float(settings, "NEG", 1.0, minimum=0)
    assert get_positive_float(settings, "A", 1.0) == 0.25
    for name in ("ZERO", "NEG"):
        with pytest.raises(SettingError, match=rf"^{name}: expected a positive number, got "):
            get_positive_float(settings, name, 1.0)
    with pytest.raises(SettingError, match=r"^BAD: expected a number, got 'soon'$"):
        get_positive_float(settings, "BAD", 1.0)


def test_bool_and_choice_helpers():
    settings = Settings({"T": "Yes", "F": "0", "B": False, "BAD": "maybe", "MODE": "Rewind", "ODD": "sideways"})
    assert get_bool(settings, "T", False) is True and get_bool(settings, "F", True) is False
    assert get_bool(settings, "B", True) is False and get_bool(settings, "MISSING", True) is True
    with pytest.raises(SettingError, match=r"^BAD: expected true or false, got 'maybe'$"):
        get_bool(settings, "BAD", False)
    assert get_choice(settings, "MODE", "fail", ("rewind", "fail")) == "rewind"
    assert get_choice(settings, "MISSING", "fail", ("rewind", "fail")) == "fail"
    with pytest.raises(SettingError, match=r"^ODD: expected one of 'rewind', 'fail', got 'sideways'$"):
        get_choice(settings, "ODD", "fail", ("rewind", "fail"))


def test_ingestion_config_checks_every_core_setting():
    config = IngestionConfig.from_settings(Settings({"BATCH_MAX_RECORDS": "5", "PARQUET_COMPRESSION": "SNAPPY"}))
    assert config.batch_max_records == 5 and config.parquet_compression == "snappy"
    for name, value, expected in [
        ("BATCH_MAX_RECORDS", "abc", "a positive integer"),
        ("BATCH_MAX_BYTES", "0", "a positive integer"),
        ("BATCH_IDLE_SECONDS", "soon", "a number >= 0"),
        ("PARQUET_COMPRESSION", "bz2", "one of 'zstd'"),
        ("DEAD_LETTER_SAMPLE_BYTES", "10", "an integer >= 64"),
    ]:
        with pytest.raises(SettingError, match=rf"^{name}: expected {expected}"):
            IngestionConfig.from_settings(Settings({name: value}))


def test_services_raise_a_bad_setting_instead_of_being_disabled():
    # NotConfigured would disable Services, and every component that needs them would fail later
    with pytest.raises(SettingError, match=r"^BATCH_MAX_RECORDS: expected a positive integer, got 'abc'$"):
        Services.from_crawler(get_crawler(Spider, {"BATCH_MAX_RECORDS": "abc"}))
