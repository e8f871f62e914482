/**
 * hermes-cron-ext for JupyterLab: the "Cron" side panel, its commands, a
 * status bar item that says loudly when no ticker is alive, and "Schedule…"
 * on notebooks and Python files in the file browser.
 */
import {
  ILayoutRestorer,
  IRouter,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification, WidgetTracker } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileDialog, IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IJob } from './api';
import { IFormPreset, JobForm } from './form';
import { CronModel } from './model';
import { RunOutput } from './output';
import { RunToasts } from './notify';
import { CronPanel } from './panel';

/** The query parameter of a link to a run: `<lab url>?hermes-cron-run=RUN_ID` opens the
 * Cron panel at that run (the backend's notifications carry such links). */
export const RUN_LINK_PARAM = 'hermes-cron-run';

const CLOCK_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161">
<path d="M11.99 2C6.47 2 2 6.48 2 12s4.47 10 9.99 10C17.52 22 22 17.52 22 12S17.52 2 11.99 2zM12 20c-4.42 0-8-3.58-8-8s3.58-8 8-8 8 3.58 8 8-3.58 8-8 8z"/>
<path d="M12.5 7H11v6l5.25 3.15.75-1.23-4.5-2.67z"/>
</g></svg>`;

export const cronIcon = new LabIcon({ name: 'hermes-cron:clock', svgstr: CLOCK_SVG });

namespace CommandIDs {
  export const open = 'hermes-cron:open';
  export const newJob = 'hermes-cron:new-job';
  export const schedule = 'hermes-cron:schedule-file';
  export const openRun = 'hermes-cron:open-run';
  export const editJob = 'hermes-cron:edit-job';
  export const refresh = 'hermes-cron:refresh';
  export const showRun = 'hermes-cron:show-run';
  export const runLink = 'hermes-cron:run-link';
}

/** The status bar item: quiet when ticking, loud when nothing fires the jobs. */
class TickerStatus extends Widget {
  constructor(model: CronModel, onClick: () => void) {
    super();
    this.addClass('jp-HermesCron-status');
    this.node.title = 'hermes-cron: open the Cron panel';
    this.node.onclick = onClick;
    const update = () => {
      const s = model.status;
      const error = model.statusError;
      this.node.replaceChildren();
      this.node.append(cronIcon.element({ tag: 'span', className: 'jp-HermesCron-statusIcon' }));
      const text = document.createElement('span');
      if (error) {
        this.node.dataset.state = 'error';
        text.textContent = 'Cron: unavailable';
        this.node.title = error;
      } else if (!s) {
        this.node.dataset.state = 'unknown';
        text.textContent = 'Cron';
      } else if (!s.ticking) {
        this.node.dataset.state = 'no-ticker';
        text.textContent = 'Cron: NO TICKER';
        this.node.title = s.warning ?? 'No ticker is alive: scheduled runs will not fire.';
      } else {
        const running = s.jobs_by_state.running ?? 0;
        const total = Object.values(s.jobs_by_state).reduce((a, b) => a + b, 0);
        this.node.dataset.state = 'ok';
        text.textContent = `Cron: ${total} job${total === 1 ? '' : 's'}${running ? `, ${running} running` : ''}`;
        this.node.title = `hermes-cron ${s.version}: ${s.alive} ticker(s) alive (${s.tickers
          .filter(t => t.alive)
          .map(t => `${t.kind} pid ${t.pid} on ${t.host}`)
          .join(', ')})`;
      }
      this.node.append(text);
    };
    model.statusChanged.connect(update);
    update();
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'hermes-cron-ext:plugin',
  description: 'The Cron side panel of hermes-cron-ext: jobs, runs and live output.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, IStatusBar, IDocumentManager, IDefaultFileBrowser, IRouter],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    docManager: IDocumentManager | null,
    browser: IDefaultFileBrowser | null,
    router: IRouter | null
  ) => {
    const model = new CronModel();
    const forms = new Map<string, MainAreaWidget<JobForm>>();
    const outputs = new WidgetTracker<MainAreaWidget<RunOutput>>({ namespace: 'hermes-cron-run' });

    const browse = docManager
      ? async (kind: 'python' | 'notebook'): Promise<string | null> => {
          const ext = kind === 'notebook' ? '.ipynb' : '.py';
          const result = await FileDialog.getOpenFiles({
            manager: docManager,
            title: kind === 'notebook' ? 'Pick a notebook to schedule' : 'Pick a Python script to schedule',
            filter: model => (model.type === 'directory' || model.path.endsWith(ext) ? {} : null)
          });
          const picked = result.value?.[0];
          return result.button.accept && picked ? picked.path : null;
        }
      : undefined;

    const openForm = (job?: IJob | null, preset?: IFormPreset) => {
      const key = job ? job.id : 'new';
      const existing = forms.get(key);
      if (existing && !existing.isDisposed && !preset) {
        app.shell.activateById(existing.id);
        return;
      }
      existing?.dispose();
      let main: MainAreaWidget<JobForm>;
      const form = new JobForm({
        api: model.api,
        job,
        preset,
        browse,
        onSaved: saved => {
          if (saved.warning) {
            // a job a definitions file manages: the next apply undoes this edit
            Notification.warning(`${saved.name}: ${saved.warning}`, { autoClose: 10000 });
          }
          panel.showSaved(saved);
          app.shell.activateById(panel.id);
          main.dispose();
        },
        onCancel: () => main.dispose()
      });
      main = new MainAreaWidget({ content: form });
      main.id = form.id;
      main.title.label = job ? `Edit ${job.name}` : 'New cron job';
      main.title.icon = cronIcon;
      main.title.closable = true;
      main.addClass('jp-HermesCron-formTab');
      forms.set(key, main);
      main.disposed.connect(() => {
        if (forms.get(key) === main) {
          forms.delete(key);
        }
      });
      app.shell.add(main, 'main');
      app.shell.activateById(main.id);
    };

    const openRunInTab = (runId: string, jobName?: string | null) => {
      const found = outputs.find(w => w.content.runId === runId);
      if (found) {
        app.shell.activateById(found.id);
        return;
      }
      const content = new RunOutput(model.api, runId, { jobName });
      const main = new MainAreaWidget({ content });
      main.id = `hermes-cron-run-${runId}`;
      main.title.label = `${jobName ?? 'Run'} · ${runId.slice(0, 8)}`;
      main.title.caption = `Output of run ${runId}`;
      main.title.icon = cronIcon;
      main.title.closable = true;
      void outputs.add(main);
      app.shell.add(main, 'main');
      app.shell.activateById(main.id);
    };

    const panel = new CronPanel({ model, openForm: job => openForm(job), openRunInTab });
    panel.title.icon = cronIcon;
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'hermes-cron-panel');

    const openPanel = () => {
      app.shell.activateById(panel.id);
    };

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open Cron Panel',
      caption: 'Show the scheduled jobs, their runs and live output',
      icon: cronIcon,
      execute: openPanel
    });
    app.commands.addCommand(CommandIDs.newJob, {
      label: 'New Cron Job…',
      caption: 'Create a scheduled job',
      icon: cronIcon,
      execute: () => {
        openPanel();
        openForm(null);
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Reload Cron Jobs',
      execute: () => {
        void panel.reload();
        void model.refreshStatus();
      }
    });
    app.commands.addCommand(CommandIDs.editJob, {
      label: 'Edit Cron Job…',
      execute: async args => {
        const ref = String(args.id ?? args.name ?? '');
        if (ref) {
          openForm(await model.api.getJob(ref));
        }
      }
    });
    const showRun = async (runId: string) => {
      openPanel();
      await panel.showRun(runId);
    };
    app.commands.addCommand(CommandIDs.showRun, {
      label: 'Show Cron Run',
      caption: 'Open a run in the Cron panel: its job selected, its output shown',
      execute: args => showRun(String(args.runId ?? ''))
    });
    // <lab url>?hermes-cron-run=RUN_ID: the panel opens at that run
    app.commands.addCommand(CommandIDs.runLink, {
      execute: args => {
        const search = String((args as IRouter.ILocation).search ?? window.location.search);
        const runId = new URLSearchParams(search).get(RUN_LINK_PARAM);
        if (!runId) {
          return;
        }
        // not awaited: the layout is restored by a route after this one (statedb's, rank 30)
        void app.restored.then(() => showRun(runId));
      }
    });
    router?.register({ command: CommandIDs.runLink, pattern: new RegExp(`[?&]${RUN_LINK_PARAM}=[^&#]+`), rank: 20 });
    new RunToasts(
      model,
      runId => void showRun(runId),
      jobId => {
        openPanel();
        void panel.select(jobId);
      },
      openPanel
    );

    app.commands.addCommand(CommandIDs.openRun, {
      label: 'Open Cron Run Output',
      execute: args => openRunInTab(String(args.runId), (args.jobName as string) ?? null)
    });
    const selectedFile = () => {
      if (!browser) {
        return null;
      }
      const item = browser.selectedItems().next();
      return item && !item.done ? item.value : null;
    };
    app.commands.addCommand(CommandIDs.schedule, {
      label: 'Schedule…',
      caption: 'Run this file on a schedule with hermes-cron',
      icon: cronIcon,
      isVisible: () => {
        const file = selectedFile();
        return !!file && (file.path.endsWith('.ipynb') || file.path.endsWith('.py'));
      },
      execute: args => {
        const path = (args.path as string | undefined) ?? selectedFile()?.path;
        if (!path) {
          return;
        }
        openPanel();
        openForm(null, { kind: path.endsWith('.ipynb') ? 'notebook' : 'python', command: path });
      }
    });
    app.contextMenu.addItem({
      command: CommandIDs.schedule,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 60
    });
    app.contextMenu.addItem({
      command: CommandIDs.schedule,
      selector: '.jp-DirListing-item[data-file-type="python"]',
      rank: 60
    });
    if (palette) {
      const category = 'Cron';
      palette.addItem({ command: CommandIDs.open, category });
      palette.addItem({ command: CommandIDs.newJob, category });
      palette.addItem({ command: CommandIDs.refresh, category });
    }
    if (statusBar) {
      statusBar.registerStatusItem('hermes-cron-ext:status', {
        item: new TickerStatus(model, openPanel),
        align: 'left',
        rank: 100,
        isActive: () => true
      });
    }
    model.start();
  }
};

export default plugin;
