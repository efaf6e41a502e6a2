"""The window's actions as data: one row per action (id, text, shortcut, tip, icon, menu
path, slot, when it is enabled, toolbar), built into QActions, menus and toolbars by
one function. A menu item is a row here, never a line of widget code in the window.

Menu paths are "File", "File/Export"...; items go in the table's order, a row with
``separator_before`` starts a new group. A row of kind "submenu" names a window method
that fills its menu (the built-in presets, the recent files, the devices); a row of
kind "docks" lists the panels' show/hide actions (Alt+1...). ``slot`` is a window
method's name ("doc.undo": an attribute path) or a function taking the window (and,
for a submenu, its QMenu); ``enabled`` is a key of the dict ``window.conditions()``
returns, read by ``refresh_enabled``.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

K = QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    id: str  # the window gets it as act_<id>
    text: str
    slot: object = ""  # a window method's name (dotted: an attribute path), or a function of the window
    shortcut: object = None  # a string, a QKeySequence.StandardKey, or a tuple of them
    tip: str = ""
    icon: str = ""
    menu: str = ""  # "File", "File/Export"; "" for none
    enabled: str = ""  # a key of window.conditions(): when the action is enabled; "" always
    toolbar: str = ""  # "File" / "Run"
    checkable: bool = False
    separator_before: bool = False
    kind: str = "action"  # "action", "submenu" (slot fills a QMenu), "docks"


def _fill_builtin(window, menu) -> None:
    from workbench import presets

    for name in presets.builtin_names():
        menu.addAction(name, lambda n=name: window.open_builtin(n))


def _keep_recent(window, menu) -> None:
    window.recent_menu = menu  # filled from the settings once they are read


def _fill_export_panels(window, menu) -> None:
    for panel in window.plot_panels:
        menu.addAction(f"{panel.title} as PNG/SVG…", lambda p=panel: window.export_panel(p, "image"))
        menu.addAction(f"{panel.title} data as CSV…", lambda p=panel: window.export_panel(p, "csv"))


def _fill_devices(window, menu) -> None:
    from workbench import spec
    from workbench.gui.training_panel import DEVICE_LABELS

    window.device_actions = {}
    for name in spec.DEVICES:
        act = menu.addAction(DEVICE_LABELS[name], lambda n=name: window.doc.set("train.device", n, merge=False))
        act.setCheckable(True)
        window.device_actions[name] = act


def _remove_top_layer(window) -> None:
    layers = window.doc.preset.model.layers
    if len(layers) > 1:
        window.doc.remove_layer("layers", len(layers) - 1)


def _show_shortcuts(window) -> None:
    from workbench.gui.window_parts import shortcuts_html

    window._info_dialog("Keyboard shortcuts", shortcuts_html(window.actions, window.docks))


def _show_about(window) -> None:
    from workbench.gui.window_parts import about_html

    window._info_dialog("About RNN Workbench", about_html(window.data_dir / "runs"))


MENUS = ("File", "Edit", "Run", "View", "Help")
MENU_TITLES = {"File": "&File", "Edit": "&Edit", "Run": "&Run", "View": "&View", "Help": "&Help",
               "File/Export": "&Export", "File/Export run": "Export &run"}

ACTIONS: tuple[ActionSpec, ...] = (
    # File
    ActionSpec("new", "&New", "new_preset", K.New, "Start a new preset (from adding_lstm)", "new", "File",
               toolbar="File"),
    ActionSpec("builtin_menu", "New from built-in preset", _fill_builtin, menu="File", kind="submenu"),
    ActionSpec("open", "&Open preset…", "open_preset", K.Open, "Open a preset file", "open", "File",
               toolbar="File"),
    ActionSpec("recent_menu", "Open &recent", _keep_recent, menu="File", kind="submenu"),
    ActionSpec("open_run", "Open &run…", "load_run_folder", "Ctrl+Shift+O",
               "Open a run folder (from the runs folder) and overlay its curves", "compare", "File",
               toolbar="File"),
    ActionSpec("save", "&Save", "save", K.Save, "Save the preset", "save", "File", toolbar="File",
               separator_before=True),
    ActionSpec("save_as", "Save &as…", "save_as", K.SaveAs, "Save the preset under a new name", menu="File"),
    ActionSpec("export_diagram", "Diagram as PNG/SVG…", "export_diagram", "Ctrl+E",
               "Save the network diagram as an image", menu="File/Export", separator_before=True),
    ActionSpec("export_panels", "Plots", _fill_export_panels, menu="File/Export", kind="submenu"),
    ActionSpec("export_preset", "Preset copy as JSON…", "export_preset", None,
               "Write a copy of the preset without changing the open file", menu="File/Export"),
    ActionSpec("export_weights", "Weights (safetensors)…", lambda w: w.export_selected("weights"), None,
               "Save the selected run's trained weights", menu="File/Export run", enabled="selected_has_weights"),
    ActionSpec("export_onnx", "ONNX model…", lambda w: w.export_selected("onnx"), None,
               "Export the selected run's model for onnxruntime", menu="File/Export run",
               enabled="selected_has_weights"),
    ActionSpec("export_script", "Standalone training script…", lambda w: w.export_selected("script"), None,
               "Write a plain PyTorch script that trains the selected run's network", menu="File/Export run",
               enabled="selected_has_weights"),
    ActionSpec("quit", "&Quit", "close", (K.Quit, "Ctrl+Q"), "Close the window", menu="File", separator_before=True),
    # Edit
    ActionSpec("undo", "&Undo", "doc.undo", K.Undo, "Undo the last edit", "undo", "Edit", enabled="can_undo",
               toolbar="File", separator_before=True),
    ActionSpec("redo", "&Redo", "doc.redo", (K.Redo, "Ctrl+Shift+Z", "Ctrl+Y"), "Redo the edit undone last",
               "redo", "Edit", enabled="can_redo", toolbar="File"),
    ActionSpec("add_layer", "Add layer", lambda w: w.doc.add_layer("layers"), "Ctrl+Shift+=", "Add a recurrent layer on top of the stack",
               menu="Edit", separator_before=True),
    ActionSpec("remove_layer", "Remove top layer", _remove_top_layer, "Ctrl+Shift+-",
               "Remove the top recurrent layer", menu="Edit"),
    # Run
    ActionSpec("train", "&Train", "start_training", ("F5", "Ctrl+Return"), "Train the preset in the background",
               "train", "Run", enabled="can_train", toolbar="Run"),
    ActionSpec("pause", "&Pause", "toggle_pause", "F6", "Pause or resume training", "pause", "Run",
               enabled="can_pause", toolbar="Run"),
    ActionSpec("stop", "&Stop", "stop_training", "Shift+F5", "Stop training (the weights are kept)", "stop", "Run",
               enabled="can_pause", toolbar="Run"),
    ActionSpec("continue_run", "&Continue selected run", "continue_selected", None,
               "Train the selected run on from its last checkpoint", menu="Run", enabled="can_continue"),
    ActionSpec("sweep", "S&weep…", "open_sweep", None,
               "Train the preset many times with swept fields and find the best", menu="Run"),
    ActionSpec("device_menu", "Device", _fill_devices, menu="Run", kind="submenu", separator_before=True),
    ActionSpec("runs_folder", "Open runs folder", "open_runs_folder", None, "Show the folder where runs are saved",
               menu="Run"),
    ActionSpec("clear_runs", "Clear earlier runs", "clear_runs", None, "Remove all but the current run from the plots",
               menu="Run"),
    # View
    ActionSpec("docks", "Panels", menu="View", kind="docks"),
    ActionSpec("log_loss", "Log-scale loss", lambda w, on: w.loss_panel.log_box.setChecked(on), "Ctrl+Shift+L", "Show the loss on a log axis",
               menu="View", checkable=True, separator_before=True),
    ActionSpec("reset_layout", "Reset layout", "_default_layout", None, "Put every panel back where it started",
               menu="View"),
    # Help
    ActionSpec("welcome", "Getting started", "welcome.show", K.HelpContents, "What to try first", menu="Help"),
    ActionSpec("shortcuts", "Keyboard shortcuts", _show_shortcuts, None, "List the shortcuts", menu="Help"),
    ActionSpec("about", "About RNN Workbench", _show_about, None, "Version and licence", menu="Help"),
)


def _sequences(shortcut) -> list[QKeySequence]:
    items = shortcut if isinstance(shortcut, tuple) else (shortcut,)
    out: list[QKeySequence] = []
    for s in items:
        seq = QKeySequence(s)
        if not seq.isEmpty() and seq not in out:  # a platform may have no key for a standard one
            out.append(seq)
    return out


def _resolve(window, slot):
    """The callable a row names: a window method, or the row's function bound to the window."""
    if callable(slot):
        return lambda *args: slot(window, *args)
    target = window
    for part in slot.split("."):
        target = getattr(target, part)
    return target


def build(window, specs: tuple[ActionSpec, ...] = ACTIONS, icon=None) -> dict[str, QAction]:
    """Make every action of ``specs`` on ``window`` (as ``window.act_<id>``), its menus in
    the menu bar and its toolbars; returns {id: QAction}. Submenus are ``window.<id>``."""
    actions: dict[str, QAction] = {}
    menus: dict[str, object] = {}
    bar = window.menuBar()

    def menu_for(path: str):
        if path not in menus:
            parent, _, _leaf = path.rpartition("/")
            owner = menu_for(parent) if parent else bar
            menus[path] = owner.addMenu(MENU_TITLES.get(path, path.rpartition("/")[2]))
        return menus[path]

    for top in MENUS:
        menu_for(top)
    toolbars: dict[str, object] = {}
    for spec in specs:
        menu = menu_for(spec.menu) if spec.menu else None
        if menu is not None and spec.separator_before and not menu.isEmpty():
            menu.addSeparator()
        if spec.kind == "submenu":
            sub = menu.addMenu(spec.text)
            setattr(window, spec.id, sub)
            _resolve(window, spec.slot)(sub)
            continue
        if spec.kind == "docks":
            for i, dock in enumerate(window.docks, start=1):
                act = dock.toggleViewAction()
                act.setShortcut(QKeySequence(f"Alt+{i}"))
                menu.addAction(act)
            continue
        act = QAction(spec.text, window)
        if spec.icon and icon is not None:
            act.setIcon(icon(spec.icon))
        if spec.shortcut is not None:
            act.setShortcuts(_sequences(spec.shortcut))
        if spec.tip:
            act.setStatusTip(spec.tip)
            keys = act.shortcut().toString()
            act.setToolTip(f"{spec.text.replace('&', '').rstrip('…')} ({keys})" if keys else spec.tip)
        act.setCheckable(spec.checkable)
        if spec.slot:
            slot = _resolve(window, spec.slot)
            # triggered(bool): a checkable action's slot takes the state, the others nothing (the
            # parameters spelled out: PySide passes a signal's arguments by the slot's signature)
            if spec.checkable:
                act.triggered.connect(lambda checked, s=slot: s(checked))
            else:
                act.triggered.connect(lambda _checked=False, s=slot: s())
        window.addAction(act)
        if menu is not None:
            menu.addAction(act)
        if spec.toolbar:
            if spec.toolbar not in toolbars:
                tb = window.addToolBar(spec.toolbar)
                tb.setObjectName(f"{spec.toolbar.lower()}Toolbar")
                tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly if spec.toolbar == "File"
                                      else Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
                toolbars[spec.toolbar] = tb
            elif spec.separator_before:
                toolbars[spec.toolbar].addSeparator()
            toolbars[spec.toolbar].addAction(act)
        actions[spec.id] = act
        setattr(window, f"act_{spec.id}", act)
    window.toolbars = toolbars
    window.menus = menus
    return actions


def refresh_enabled(window, actions: dict[str, QAction], specs: tuple[ActionSpec, ...] = ACTIONS) -> None:
    """Enable each action whose condition (``window.conditions()[spec.enabled]``) holds."""
    conditions = window.conditions()
    for spec in specs:
        if spec.enabled and spec.id in actions:
            actions[spec.id].setEnabled(bool(conditions[spec.enabled]))
